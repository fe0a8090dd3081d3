"""HKD student: switches, loss terms, teacher init, training, one-step sampling, resume, CLI, DDP,
and the dynamics measurements of docs/method.md §4."""

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from checks import assert_same_checkpoints
from PIL import Image
from typer.testing import CliRunner

from koopscope.cli.main import app
from koopscope.diffusion.precond import c_in
from koopscope.diffusion.samplers import seeded_noise
from koopscope.diffusion.teacher import load_teacher
from koopscope.errors import CheckpointError, KoopscopeError
from koopscope.generators import load_generator
from koopscope.hkd.dynamics import dynamics_share, eigen_spread, latent_consistency, trajectory_fidelity
from koopscope.hkd.loss import HKDLossConfig, hkd_loss
from koopscope.hkd.model import HKDConfig
from koopscope.hkd.sample import latent_trajectory, one_step
from koopscope.hkd.task import HKDTask, load_hkd
from koopscope.io.checkpoint import load_checkpoint
from koopscope.io.meta import images_seen, read_meta, sha256
from koopscope.train.loop import train
from koopscope.train.presets import HKD_PRESETS, TEACHER_PRESETS

UNET = TEACHER_PRESETS["smoke"].unet
T, EPS = 80.0, 0.002


def _task(chain, **model):
    p = HKD_PRESETS["smoke"]
    cfg = HKDConfig(UNET, time_axis=p.time_axis, **{"encoder_conditioning": p.encoder_conditioning, **model})
    loss = HKDLossConfig(distance=p.distance, intermediate=p.intermediate, latent=p.latent)
    return HKDTask(cfg, loss, chain[1], p.points, teacher=str(chain[0]))


def _train(chain, out, steps, resume=False, **cfg):
    p = HKD_PRESETS["smoke"]
    torch.manual_seed(321)  # the loop seeds itself
    return train(_task(chain), replace(p.train, steps=steps, threads=1, **cfg), out, resume=resume, preset="smoke",
                 progress=False)


@pytest.fixture(scope="module")
def trained(chain, tmp_path_factory):
    """150 smoke HKD steps; returns the run folder."""
    out = tmp_path_factory.mktemp("hkd") / "run"
    _train(chain, out, 150, grid=0)
    return out


def _model(chain, seed=None, **cfg):
    model = _task(chain, **cfg).net.eval()
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for level in model.koopman.levels:
                level.alpha.copy_(torch.randn(level.alpha.shape, generator=g) * 0.2)
                level.beta.copy_(torch.randn(level.beta.shape, generator=g) * 0.2)
    return model


def _latents(model, store, k=0, n=4):
    x = torch.stack([store[i][k] for i in range(n)])
    return model.encode(x, float(store.sigmas[k]))


def _batch(store, times=3, seed=0):
    b = store.sample(4, times, torch.Generator().manual_seed(seed))
    return b.x, store.sigmas[b.index], b.x0


# ---- switches and loss terms ---------------------------------------------------------------------------------

@torch.no_grad()
def test_generators_start_at_identity_and_koopman_off_is_identity(chain):
    model = _model(chain)
    zs = _latents(model, chain[1])
    assert all(torch.equal(a, b) for a, b in zip(model.evolve(zs, T, EPS), zs))
    off = _model(chain, seed=1, koopman=False)
    assert any(level.alpha.abs().sum() > 0 for level in off.koopman.levels)
    zs = _latents(off, chain[1])
    assert all(torch.equal(a, b) for a, b in zip(off.evolve(zs, T, EPS), zs))


@torch.no_grad()
def test_hierarchy_off_evolves_only_the_bottleneck(chain):
    model = _model(chain, seed=2, hierarchy=False)
    zs = _latents(model, chain[1])
    out = model.evolve(zs, T, EPS)
    assert all(torch.equal(a, b) for a, b in zip(out[:-1], zs[:-1]))
    assert (out[-1] - zs[-1]).abs().max() > 1e-3


def test_consistency_off_uses_only_the_x_T_column(chain):
    model = _model(chain, seed=3)
    x, sigmas, x0 = _batch(chain[1])
    bumped = x.clone()
    bumped[:, 1:] += 0.5
    for consistency in (False, True):
        cfg = HKDLossConfig(consistency=consistency, intermediate=0.0)
        with torch.no_grad():
            loss, terms = hkd_loss(model, x, sigmas, x0, cfg, torch.Generator().manual_seed(0))
            loss2, _ = hkd_loss(model, bumped, sigmas, x0, cfg, torch.Generator().manual_seed(0))
        assert ("tc" in terms) is consistency and "rec" in terms
        assert torch.equal(loss, loss2) is not consistency


@torch.no_grad()
def test_intermediate_term(chain):
    model = _model(chain, seed=4)
    batch = _batch(chain[1], times=4)
    _, terms = hkd_loss(model, *batch, HKDLossConfig(intermediate=0.0), torch.Generator().manual_seed(0))
    assert set(terms) == {"rec", "tc"}
    loss, terms = hkd_loss(model, *batch, HKDLossConfig(intermediate=0.5), torch.Generator().manual_seed(0))
    assert set(terms) == {"rec", "tc", "mid"} and terms["mid"] > 0
    torch.testing.assert_close(loss, terms["rec"] + terms["tc"] + 0.5 * terms["mid"])


@torch.no_grad()
def test_blind_encoder_ignores_the_sigma_it_is_given(chain):
    x = torch.stack([chain[1][i][2] for i in range(3)])
    for kind, same in (("blind", True), ("sigma", False)):
        model = _model(chain, encoder_conditioning=kind)
        a, b = model.encode(x, 5.0), model.encode(x, 0.5)
        assert all(torch.equal(u, v) for u, v in zip(a, b)) is same, kind


def test_init_from_teacher_copies_the_weights(chain):
    backbone = load_teacher(chain[0])[0].backbone
    model = _model(chain)
    for mine, theirs in ((model.embed, backbone.embed), (model.encoder, backbone.down), (model.decoder, backbone.up)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sum(p.abs().sum() for p in model.decoder.parameters()) > 0   # not the zero-initialised output


# ---- training ----------------------------------------------------------------------------------------------------

def test_smoke_training_lowers_the_loss(trained):
    log = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 150 and {"rec", "tc", "mid"} <= set(log[0])
    early, late = np.mean([r["rec"] for r in log[:3]]), np.mean([r["rec"] for r in log[-3:]])
    assert late < 0.6 * early, (early, late)
    opts = json.loads((trained / "options.json").read_text())
    assert opts["kind"] == "hkd" and opts["data"]["trajectory_count"] == 64


def test_resume_is_bit_for_bit(chain, tmp_path):
    _train(chain, tmp_path / "full", 20, ckpt_every=10, grid=0)
    _train(chain, tmp_path / "split", 10, ckpt_every=10, grid=0)
    _train(chain, tmp_path / "split", 20, resume=True, ckpt_every=10, grid=0)
    assert_same_checkpoints(tmp_path / "full" / "checkpoint.safetensors", tmp_path / "split" / "checkpoint.safetensors")


def test_a_run_started_before_the_renames_resumes(chain, tmp_path):
    """options.json with time / encoder_time / times (and tau = sigma called "sigma") still matches on resume."""
    _train(chain, tmp_path / "run", 2, ckpt_every=2, grid=0)
    path = tmp_path / "run" / "options.json"
    opts = json.loads(path.read_text())
    m = opts["model"]["model"]
    m["time"], m["encoder_time"] = m.pop("time_axis"), m.pop("encoder_conditioning")
    opts["model"]["times"] = opts["model"].pop("points")
    path.write_text(json.dumps(opts))
    _train(chain, tmp_path / "run", 3, resume=True, ckpt_every=2, grid=0)
    m["encoder_time"] = "sigma"   # a real difference is still refused
    path.write_text(json.dumps(opts))
    with pytest.raises(KoopscopeError, match="encoder_conditioning='sigma', now 'blind'"):
        _train(chain, tmp_path / "run", 4, resume=True, ckpt_every=2, grid=0)


def test_two_process_ddp_training(chain, tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "koopscope.cli.main", "train", "hkd", "--trajectories", str(chain[1].path),
                        "--teacher", str(chain[0]), "--steps", "4", "--grid", "0", "--threads", "1",
                        "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["state"]["world_size"] == 2 and meta["state"]["step"] == 4
    assert json.loads((out / "options.json").read_text())["world_size"] == 2


# ---- one-step sampling ---------------------------------------------------------------------------------------------

def test_one_step_is_one_network_pass(chain, trained):
    model = _model(chain, seed=5)
    calls = {"encoder": 0, "decoder": 0}
    hooks = [getattr(model, name).register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
             for name in calls]
    one_step(model, range(6), batch=6)
    assert calls == {"encoder": 1, "decoder": 1}
    one_step(model, range(6), batch=2)
    assert calls == {"encoder": 4, "decoder": 4}   # once per batch
    for h in hooks:
        h.remove()
    gen = load_generator(trained / "model.safetensors")
    assert gen.nfe == 1 and gen(range(4)).shape == (4, 1, 16, 16)


def test_samples_do_not_depend_on_the_batch(chain):
    model = _model(chain, seed=6)
    a, b = one_step(model, range(8), batch=2), one_step(model, range(8), batch=8)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(one_step(model, [5, 6]), a[5:7], rtol=0, atol=1e-5)


@torch.no_grad()
def test_latent_trajectory_is_the_closed_form_path(chain):
    model = _model(chain, seed=7)
    seeds, sigmas = [3, 4], [T, 5.0, 0.5, EPS]
    latents, states = latent_trajectory(model, seeds, sigmas)
    z_T = model.encode(seeded_noise(seeds, (1, 16, 16)) * T, T)
    assert all(torch.equal(a, b) for a, b in zip(latents[0], z_T))
    assert torch.equal(states[-1], one_step(model, seeds))
    for a, b in zip(latents[-1], model.evolve(z_T, T, EPS)):
        torch.testing.assert_close(a, b)
    for a, b in zip(model.evolve(latents[1], 5.0, EPS), latents[-1]):   # T -> t -> eps == T -> eps
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert states.shape == (4, 2, 1, 16, 16)


# ---- checkpoints and CLI --------------------------------------------------------------------------------------------

def test_load_hkd_refuses_a_teacher_checkpoint(chain, trained):
    with pytest.raises(CheckpointError, match="'teacher' checkpoint; this needs an HKD checkpoint"):
        load_hkd(chain[0])
    model, meta = load_hkd(trained / "model.safetensors")
    assert meta["kind"] == "hkd" and not any(p.requires_grad for p in model.parameters())


def test_sample_cli(trained, tmp_path):
    runner, ckpt = CliRunner(), str(trained / "model.safetensors")
    r = runner.invoke(app, ["sample", ckpt, "--count", "5", "--seed", "10", "--out", str(tmp_path / "s.npz"),
                            "--no-progress"])
    assert r.exit_code == 0 and "1 NFE" in r.stdout, r.output
    npz = np.load(tmp_path / "s.npz")
    assert npz["images"].dtype == np.uint8 and npz["images"].shape == (5, 1, 16, 16)
    assert npz["seeds"].tolist() == list(range(10, 15)) and int(npz["nfe"]) == 1
    r = runner.invoke(app, ["sample", ckpt, "--count", "4", "--out", str(tmp_path / "s.png"), "--no-progress"])
    assert r.exit_code == 0 and Image.open(tmp_path / "s.png").size[0] > 16
    for bad, msg in ((["--count", "0"], "--count"), (["--out", str(tmp_path / "s.jpg")], "a .png / .npz file")):
        r = runner.invoke(app, ["sample", ckpt, *bad])
        assert r.exit_code == 2 and msg in r.stderr and r.stderr.strip().count("\n") == 0, r.output


def test_train_hkd_cli_refuses_mismatches(chain, trained, tmp_path):
    runner = CliRunner()
    base = ["train", "hkd", "--trajectories", str(chain[1].path), "--steps", "1", "--no-progress"]
    cases = [(["--preset", "fashion", "--out", str(tmp_path / "a")], "(1, 16, 16)"),   # 32x32 network
             (["--teacher", str(trained / "model.safetensors"), "--out", str(tmp_path / "b")], "'hkd' checkpoint"),
             (["--encoder-conditioning", "clock", "--out", str(tmp_path / "c")], "--encoder-conditioning")]
    for args, msg in cases:
        r = runner.invoke(app, [*base, *args])
        assert r.exit_code == 2 and msg in r.stderr and r.stderr.strip().count("\n") == 0, r.output
    assert not (tmp_path / "a" / "checkpoint.safetensors").exists()


# ---- dynamics measurements (docs/method.md §4) --------------------------------------------------------------------

def test_dynamics_measures_at_a_zero_generator(chain):
    model, store = _model(chain), chain[1]
    share = dynamics_share(model, store, count=8)
    assert share["overall"]["share"] == 0 and share["overall"]["explained"] == 0
    assert share["change"] == 0 and share["rmse"] == share["ablated_rmse"] > 0
    spread = eigen_spread(model)
    assert all(v["std"] == v["max"] == v["frac_above"] == 0 for v in [*spread["levels"], spread["overall"]])
    lc = latent_consistency(model, store, count=8)
    assert lc["overall"]["error"] == lc["overall"]["static"] > 0
    assert len(lc["pairs"]) == math.comb(len(store.sigmas) - 1, 2)


def test_dynamics_measures_with_nonzero_generators(chain):
    store = chain[1]
    model = _model(chain, seed=8)
    share = dynamics_share(model, store, count=8)
    assert all(0 < v["share"] < 1 for v in [*share["levels"], share["overall"]])
    assert share["change"] > 0
    spread = eigen_spread(model)
    assert all(v["std"] > 0 and v["frac_above"] > 0.5 for v in spread["levels"])
    alphas = torch.cat([g.alpha.detach().abs().flatten() for g in model.koopman.levels])
    assert spread["overall"]["max"] == pytest.approx(float(alphas.max()))
    lc = latent_consistency(model, store, count=8)
    assert lc["overall"]["error"] != lc["overall"]["static"]
    off = _model(chain, seed=8, hierarchy=False)   # static levels count as |Re| = 0
    spread = eigen_spread(off)
    assert all(v["max"] == 0 for v in spread["levels"][:-1]) and spread["levels"][-1]["max"] > 0
    assert dynamics_share(off, store, count=8)["levels"][0]["share"] == 0


@torch.no_grad()
def test_trajectory_fidelity_matches_a_direct_computation(chain):
    model, store = _model(chain, seed=9), chain[1]
    fid = trajectory_fidelity(model, store, count=6, batch=4)
    grid = store.sigmas[:-1]
    assert fid["sigmas"] == grid.tolist() and len(fid["rmse"]) == len(grid)
    x = torch.stack([store[i] for i in range(6)])
    z_T = model.encode(x[:, 0], T)
    for k in (0, len(grid) - 1):
        s = float(grid[k])
        ref = c_in(grid[k]) * x[:, k].double()
        direct = (model.decode(model.evolve(z_T, T, s)).double() - ref).pow(2).mean().sqrt()
        assert fid["rmse"][k] == pytest.approx(float(direct), rel=1e-5)


# ---- latent consistency on a trained smoke model (docs/method.md §5) ------------------------------------------

def test_consistency_cli_with_a_store(chain, trained, tmp_path):
    runner, ckpt = CliRunner(), str(trained / "model.safetensors")
    r = runner.invoke(app, ["consistency", ckpt, "--trajectories", str(chain[1].path), "--count", "8",
                            "--out", str(tmp_path / "c.nc"), "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["explained_from_T"]) == 3 and len(out["sigmas"]) == len(chain[1].sigmas) - 1
    assert (tmp_path / "c.nc").exists() and (tmp_path / "c.png").exists() and (tmp_path / "c.json").exists()
    for args, msg in (([ckpt, "--trajectories", str(chain[1].path), "--count", "65"], "fewer than --count 65"),
                      (["--trajectories", str(chain[1].path)], "another teacher"),
                      ([ckpt, "--teacher", str(chain[0]), "--count", "2", "--out", str(tmp_path / "c.nc" / "x")],
                       "")):
        r = runner.invoke(app, ["consistency", *args, "--no-progress"])
        last = r.stderr.strip().splitlines()[-1]
        assert r.exit_code == 2 and last.startswith("error:") and msg in last, (args, r.output)


def test_generalisation_script_measures_training_and_heldout_seeds(chain, trained, tmp_path, monkeypatch, capsys):
    """analyses/generalisation.py: the consistency measurement on the training store's first trajectories and on a
    held-out store, a row per checkpoint kept across calls, and one-line errors."""
    import runpy

    from koopscope.spectral.consistency import measure
    from koopscope.trajectories import TrajectoryStore, generate

    script = str(Path(__file__).resolve().parent.parent / "analyses/generalisation.py")
    generate(chain[0], tmp_path / "heldout", 8, seed_offset=1000, progress=False)
    ckpt, out, fig = trained / "model.safetensors", tmp_path / "gen.json", tmp_path / "gen"

    def run(*args, train=chain[1].path, heldout=tmp_path / "heldout"):
        monkeypatch.setattr("sys.argv", [script, *map(str, args), "--train", str(train), "--heldout", str(heldout),
                                         "--count", "8", "--out", str(out), "--figure", str(fig)])
        runpy.run_path(script, run_name="__main__")
        return capsys.readouterr()

    run(ckpt)
    (row,) = json.loads(out.read_text())["rows"]
    model, _ = load_hkd(ckpt)
    direct = measure(model, torch.stack([chain[1][i] for i in range(8)]), chain[1].sigmas)
    assert row["train"]["one_step_mse"] == pytest.approx(direct.attrs["one_step_mse"], rel=1e-6)
    assert row["seeds"] == {"train": [0, 7], "heldout": [1000, 1007]} and row["step"] == 150
    assert row["heldout"]["one_step_mse"] != row["train"]["one_step_mse"] > 0
    assert "already measured" in run(ckpt).out and fig.with_suffix(".png").stat().st_size > 0
    assert TrajectoryStore(tmp_path / "heldout").seeds.tolist() == list(range(1000, 1008))
    for args, kw, match in (((ckpt,), {"heldout": chain[1].path}, "not held out"),
                            ((tmp_path / "nope",), {}, "no checkpoint at")):
        with pytest.raises(SystemExit) as e:
            run(*args, **kw)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and match in err, err


def test_sample_spectra_script_compares_student_and_teacher_power(chain, trained, tmp_path, monkeypatch, capsys):
    """analyses/sample_spectra.py: radial power spectra of one-step samples against the teacher's samples of the
    same seeds, a row per checkpoint kept across calls, one-line errors."""
    import runpy

    from koopscope.hkd.sample import one_step

    script = str(Path(__file__).resolve().parent.parent / "analyses/sample_spectra.py")
    radial_power = runpy.run_path(script)["radial_power"]
    i = torch.arange(32, dtype=torch.float64)
    wave = torch.cos(2 * torch.pi * 3 * i / 32)[None, None, None, :].expand(2, 1, 32, 32) + 5.0
    p = radial_power(wave)
    assert p[3] / p.sum() == pytest.approx(1.0, abs=1e-12)   # one frequency, its mean removed
    radial_filter = runpy.run_path(script)["radial_filter"]
    x = torch.randn(3, 1, 16, 16)
    assert torch.allclose(radial_filter(x, torch.ones(12, dtype=torch.float64)), x, atol=1e-5)
    only_mean = torch.zeros(12, dtype=torch.float64)
    only_mean[0] = 1
    assert torch.allclose(radial_filter(x, only_mean), x.mean(dim=(-2, -1), keepdim=True).expand_as(x), atol=1e-5)
    ckpt, out, fig = trained / "model.safetensors", tmp_path / "s.json", tmp_path / "s"

    def run(*args):
        monkeypatch.setattr("sys.argv", [script, *map(str, args), "--out", str(out), "--figure", str(fig)])
        runpy.run_path(script, run_name="__main__")
        return capsys.readouterr()

    run(ckpt, "--store", chain[1].path, "--count", "8")
    (row,) = json.loads(out.read_text())["rows"]
    model, _ = load_hkd(ckpt)
    student = one_step(model, range(8)).clamp(-1, 1)
    teacher = torch.stack([chain[1][j][-1] for j in range(8)]).clamp(-1, 1)
    assert row["mse"] == pytest.approx(float((student - teacher).square().mean()), rel=1e-5)
    assert row["student_power"] == pytest.approx(radial_power(student).tolist(), rel=1e-5)
    high = torch.arange(len(row["teacher_power"])) > 10
    t, s = torch.tensor(row["teacher_power"]), torch.tensor(row["student_power"])
    assert row["bands"]["high"]["student_over_teacher"] == pytest.approx(float(s[high].sum() / t[high].sum()))
    printed = run(ckpt, "--store", chain[1].path, "--count", "8", "--blur-store", chain[1].path,
                  "--blur-count", "8").out
    assert "already measured" in printed and "filtered to this student's spectrum" in printed
    (b,) = json.loads(out.read_text())["blur"]
    assert b["count"] == 8 and b["teacher"]["fid"] != b["filtered"]["fid"] and b["sha256"] == row["sha256"]
    assert fig.with_suffix(".png").stat().st_size > 0
    for args, match in (((ckpt,), "--store names"), ((tmp_path / "nope", "--store", chain[1].path), "no checkpoint"),
                        ((ckpt, "--store", chain[1].path, "--count", "100000"), "fewer than --count"),
                        ((ckpt, "--store", chain[1].path, "--blur-store", chain[1].path, "--blur-count", "100000"),
                         "fewer than --blur-count")):
        with pytest.raises(SystemExit) as e:
            run(*args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and match in err, err


def test_warm_start_from_a_trained_student(chain, trained):
    from koopscope.models import SHIPPED
    from koopscope.pipeline import hkd_task

    task, _ = hkd_task("smoke", chain[1].path, chain[0], latent=1.0, init=trained / "model.safetensors")
    ema, _ = load_hkd(trained / "model.safetensors")
    mine, theirs = task.net.state_dict(), ema.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert task.config()["init"] == str(trained / "model.safetensors") and task.loss_cfg.latent == 1.0
    with pytest.raises(Exception, match="another network"):
        hkd_task("smoke", chain[1].path, chain[0], init=SHIPPED)


def test_warm_start_carries_a_student_to_its_teacher_trained_further(chain, continued, trained, tmp_path):
    """A student of teacher T may warm-start on the trajectories of T continued by `train teacher --init T`;
    the reverse (a student of the continued teacher on T's store) is refused."""
    from dataclasses import replace

    from koopscope.pipeline import hkd_task
    from koopscope.train.loop import train
    from koopscope.trajectories import generate

    generate(continued, tmp_path / "store", 8, progress=False)
    student = trained / "model.safetensors"
    carried, hkd_cfg = hkd_task("smoke", tmp_path / "store", continued, init=student)
    assert carried.config()["init"] == str(student)
    late = train(carried, replace(hkd_cfg, steps=2, threads=1, grid=0, sample_every=0), tmp_path / "hkd",
                 preset="smoke", progress=False)
    prov = read_meta(late)["provenance"]   # the student names the one it went on from by content
    assert (prov["init"], prov["init_sha256"]) == (str(student), sha256(student))
    assert images_seen(read_meta(late)) == prov["images_seen"] + read_meta(student)["provenance"]["images_seen"]
    with pytest.raises(Exception, match="another teacher"):
        hkd_task("smoke", chain[1].path, chain[0], init=late)


def test_ship_model_records_a_students_lineage(chain, trained, tmp_path, monkeypatch):
    """analyses/ship_model.py on a student warm-started from another: every run it went through, by content."""
    import runpy

    from koopscope.pipeline import hkd_task
    from koopscope.train.loop import train

    first = trained / "model.safetensors"
    task, cfg = hkd_task("smoke", chain[1].path, chain[0], init=first)
    late = train(task, replace(cfg, steps=2, threads=1, grid=0, sample_every=0), tmp_path / "late", preset="smoke",
                 progress=False)
    digest, ev, cons, models = sha256(late), tmp_path / "eval.json", tmp_path / "cons.json", tmp_path / "models"
    cons.write_text(json.dumps({"checkpoint_sha256": digest, "consistent": True, "min_explained": 0.99}))
    script = str(Path(__file__).resolve().parent.parent / "analyses/ship_model.py")

    def ship(evaluated: str):
        ev.write_text(json.dumps({"hkd": str(late), "hkd_step": 2, "hkd_sha256": evaluated, "count": 8,
                                  "reference": "smoke", "hkd_seeds": [0, 7], "hkd_vs_data": {"fid": 30.0,
                                  "kid_mean": 0.02}, "teacher_vs_data": {"fid": 10.0},
                                  "fid_ratio_hkd_over_teacher": 3.0, "hkd_vs_teacher": None}))
        monkeypatch.setattr("sys.argv", [script, str(late), "--teacher", str(chain[0]), "--eval", str(ev),
                                         "--consistency", str(cons), "--models", str(models)])
        runpy.run_path(script, run_name="__main__")

    with pytest.raises(SystemExit, match="not this model"):
        ship("another")
    assert not models.exists()
    ship(digest)
    rec = json.loads((models / "hkd-smoke.json").read_text())
    first_prov = read_meta(first)["provenance"]
    assert [(r["sha256"], r["step"]) for r in rec["lineage"]] == [(digest, 2), (sha256(first), first_prov["step"])]
    assert rec["lineage"][1]["trajectories"] == first_prov["trajectories"] and rec["train"]["steps"] == 2
    assert rec["images_seen"] == images_seen(read_meta(late)) > rec["lineage"][0]["images_seen"]
    assert rec["fid"]["ratio"] == 3.0 and read_meta(models / "hkd-smoke.safetensors")["consistency"]["consistent"]


def test_checkpoints_from_before_the_renames_load():
    """The first shipped student's header (checkpoints/hkd-fashion-v3) still says time / encoder_time / times;
    they read as time_axis / encoder_conditioning / points."""
    from koopscope.hkd.config import current_names
    from koopscope.hkd.task import load_hkd
    from koopscope.io.meta import COMMITTED, read_meta

    path = COMMITTED / "hkd-fashion-v3.safetensors"
    record = read_meta(path)["config"]
    old = record["model"]
    assert old["time"] == "log" and old["encoder_time"] == "blind" and record["times"] == 3
    now = current_names(record)
    assert now["points"] == 3 and "times" not in now and now["model"]["encoder_conditioning"] == "blind"
    cfg = load_hkd(path)[0].cfg
    assert cfg.time_axis == "log" and cfg.encoder_conditioning == "blind"
    d = cfg.to_dict()
    d.pop("time_axis")
    assert HKDConfig.from_dict({**d, "time": "sigma"}).time_axis == "linear"
