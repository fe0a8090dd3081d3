"""EDM teacher: preconditioning, samplers on an analytic denoiser, training, resume, DDP, presets."""

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from checks import assert_same_checkpoints
from PIL import Image
from safetensors.torch import save_file

from koopscope.data import load_dataset
from koopscope.diffusion.precond import EDMPrecond, edm_scalings
from koopscope.diffusion.samplers import euler, heun, karras_sigmas, sample, seeded_noise
from koopscope.diffusion.teacher import TeacherTask, load_teacher
from koopscope.diffusion.unet import UNetConfig
from koopscope.errors import CheckpointError
from koopscope.io.checkpoint import load_checkpoint, save_checkpoint
from koopscope.train.loop import train
from koopscope.train.presets import TEACHER_PRESETS

KOOPSCOPE = [sys.executable, "-m", "koopscope.cli.main"]


class GaussianDenoiser:
    """Exact D(x, sigma) = E[x0 | x] for data ~ N(mu, s0^2 I); counts its calls."""

    def __init__(self, mu: float, s0: float):
        self.mu, self.s0, self.calls = mu, s0, 0

    def __call__(self, x, sigma):
        self.calls += 1
        s2 = torch.as_tensor(sigma, dtype=torch.float64) ** 2
        return (self.s0**2 * x + s2 * self.mu) / (self.s0**2 + s2)

    def exact(self, x_T, T, t):
        """PF-ODE solution: x(t) = mu + (x_T - mu) sqrt(s0^2 + t^2) / sqrt(s0^2 + T^2)."""
        return self.mu + (x_T - self.mu) * math.sqrt(self.s0**2 + t**2) / math.sqrt(self.s0**2 + T**2)


def test_edm_scalings_match_the_paper():
    s = torch.tensor([0.002, 1.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_scalings(s)
    sd = 0.5
    assert torch.allclose(c_skip, sd**2 / (s**2 + sd**2))
    assert torch.allclose(c_out, s * sd / torch.sqrt(s**2 + sd**2))
    assert torch.allclose(c_in, 1 / torch.sqrt(s**2 + sd**2))
    assert torch.allclose(c_noise, torch.log(s) / 4)


def test_precond_passes_scaled_input_to_backbone():
    seen = {}

    def backbone(x, c_noise):
        seen["x"], seen["c"] = x, c_noise
        return torch.ones_like(x)

    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    out = EDMPrecond(backbone)(x, torch.tensor([1.0, 2.0]))
    sigma = torch.tensor([1.0, 2.0], dtype=torch.float64)
    c_skip, c_out, c_in, _ = (c.reshape(-1, 1, 1, 1) for c in edm_scalings(sigma))
    assert torch.allclose(seen["x"].double(), (c_in * x), atol=1e-6)
    assert torch.allclose(out, c_skip * x + c_out, atol=1e-6)


def test_karras_grid():
    s = karras_sigmas(18)
    assert len(s) == 19 and s[-1] == 0
    assert s[0].item() == pytest.approx(80.0) and s[-2].item() == pytest.approx(0.002)
    assert torch.all(s[:-1] > s[1:])


@pytest.mark.parametrize("solver,steps,nfe", [("heun", 18, 35), ("heun", 40, 79), ("heun", 8, 15), ("euler", 10, 10)])
def test_nfe_counts_are_exact(solver, steps, nfe):
    d = GaussianDenoiser(0.3, 0.5)
    _, counted = sample(d, [0, 1], (1, 2, 2), steps=steps, solver=solver)
    assert counted == nfe == d.calls


def test_heun_reproduces_the_gaussian_ode_solution():
    d = GaussianDenoiser(mu=0.7, s0=0.4)
    x_T = seeded_noise([5, 6, 7], (1, 3, 3)) * 80.0
    errors = {}
    for n in (128, 256, 512):
        sig = karras_sigmas(n)[:-1]  # stop at sigma_min: compare the ODE itself
        x, _ = heun(d, x_T, torch.cat([sig, sig[-1:]]))  # last step of length zero
        errors[n] = (x - d.exact(x_T, 80.0, 0.002)).abs().max().item()
    assert errors[512] < 1e-4
    assert errors[128] / errors[256] > 3.8 and errors[256] / errors[512] > 3.8  # second order
    x_e, _ = euler(d, x_T, karras_sigmas(512))
    x_h, _ = heun(d, x_T, karras_sigmas(512))
    exact0 = d.exact(x_T, 80.0, 0.0)
    assert (x_h - exact0).abs().max() < (x_e - exact0).abs().max()
    assert (x_h - exact0).abs().max() < 2e-4


def test_samples_do_not_depend_on_the_batch():
    d = GaussianDenoiser(0.1, 0.5)
    a, _ = sample(d, [1, 2, 3, 4], (1, 4, 4), steps=6)
    b, _ = sample(d, [3, 4], (1, 4, 4), steps=6)
    assert torch.equal(a[2:], b)


@pytest.fixture(scope="module")
def smoke_data():
    p = TEACHER_PRESETS["smoke"]
    return load_dataset(p.dataset, size=p.resolution, limit=p.data_limit)


def _smoke(data, out, steps, resume=False):
    p = TEACHER_PRESETS["smoke"]
    cfg = replace(p.train, steps=60, threads=1)
    torch.manual_seed(123)  # different global state must not matter: the loop seeds itself
    cfg = replace(cfg, steps=steps)
    return train(TeacherTask(p.unet, data, p.sampler_steps), cfg, out, resume=resume, preset="smoke", progress=False)


def test_smoke_training_lowers_the_loss(tmp_path, smoke_data):
    _smoke(smoke_data, tmp_path / "run", 60)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 60
    assert np.mean([r["loss"] for r in log[-2:]]) < 0.8 * log[0]["loss"]
    assert (tmp_path / "run" / "samples" / "step_0000060.png").exists()
    opts = json.loads((tmp_path / "run" / "options.json").read_text())
    assert opts["preset"] == "smoke" and opts["data"]["data_hash"] == smoke_data.hash
    net, meta = load_teacher(tmp_path / "run" / "model.safetensors")
    prov = meta["provenance"]
    assert prov["step"] == 60 and prov["dataset"] == "fashion" and prov["data_hash"] == smoke_data.hash
    assert prov["koopscope_version"] and prov["preset"] == "smoke"


def test_resume_is_bit_for_bit(tmp_path, smoke_data):
    _smoke(smoke_data, tmp_path / "full", 60)
    _smoke(smoke_data, tmp_path / "split", 30)
    _smoke(smoke_data, tmp_path / "split", 60, resume=True)
    assert_same_checkpoints(tmp_path / "full" / "checkpoint.safetensors", tmp_path / "split" / "checkpoint.safetensors")


def test_rampdown_schedule_and_runs_recorded_before_it_resume(tmp_path, smoke_data):
    from koopscope.errors import KoopscopeError
    from koopscope.train.loop import TrainConfig, check_config, lr_at

    cfg = TrainConfig(steps=10, lr=1.0, warmup=2, rampdown=4)
    assert [lr_at(s, cfg) for s in range(10)] == [0.5, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert [lr_at(s, replace(cfg, rampdown=0)) for s in range(10)] == [0.5] + [1] * 9
    with pytest.raises(KoopscopeError, match="--rampdown 11 is longer than the run"):
        check_config(replace(cfg, rampdown=11))
    _smoke(smoke_data, tmp_path / "run", 10)
    path = tmp_path / "run" / "options.json"
    opts = json.loads(path.read_text())
    assert opts["train"].pop("rampdown") == 0
    path.write_text(json.dumps(opts))   # as written before the setting existed
    _smoke(smoke_data, tmp_path / "run", 12, resume=True)
    opts["train"]["rampdown"] = 5
    path.write_text(json.dumps(opts))
    with pytest.raises(KoopscopeError, match="train.rampdown=5"):
        _smoke(smoke_data, tmp_path / "run", 14, resume=True)


def test_refuses_to_overwrite_or_resume_nothing(tmp_path, smoke_data):
    from koopscope.errors import KoopscopeError

    _smoke(smoke_data, tmp_path / "run", 10)
    with pytest.raises(KoopscopeError, match="--resume"):
        _smoke(smoke_data, tmp_path / "run", 10)
    with pytest.raises(KoopscopeError, match="nothing to resume"):
        _smoke(smoke_data, tmp_path / "other", 10, resume=True)


def test_init_continues_a_trained_teacher(tmp_path, smoke_data):
    from koopscope.errors import KoopscopeError
    from koopscope.train.presets import teacher_preset

    first = _smoke(smoke_data, tmp_path / "first", 20)
    p = teacher_preset("smoke")
    task = TeacherTask(p.unet, smoke_data, p.sampler_steps, init=first)
    trained, _ = load_teacher(first)
    assert all(torch.equal(a, b) for a, b in zip(task.net.state_dict().values(), trained.state_dict().values()))
    out = train(task, replace(p.train, steps=5), tmp_path / "cont", preset="smoke", progress=False)
    prov = load_teacher(out)[1]["provenance"]
    assert prov["init"] == str(first) and len(prov["init_sha256"]) == 64 and prov["step"] == 5
    with pytest.raises(KoopscopeError, match="another network"):
        TeacherTask(replace(p.unet, channels=p.unet.channels * 2), smoke_data, p.sampler_steps, init=first)
    r = _cli("train", "teacher", "--init", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def _cli(*args, env=None, **kw):
    return subprocess.run([*KOOPSCOPE, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)


def test_two_process_ddp_training(tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "koopscope.cli.main", "train", "teacher", "--preset", "smoke", "--steps", "10",
                        "--threads", "1", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-8000:]   # a failing rank's own message stands before the launcher's report
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["state"]["world_size"] == 2 and meta["state"]["step"] == 10
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 10  # only rank 0 logs
    # resumed on one process: optimizer, EMA and step go on, the data order is new (and said so)
    r = _cli("train", "teacher", "--preset", "smoke", "--steps", "12", "--threads", "1", "--out", str(out),
             "--resume", "--no-progress", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming at step 10 on 1 processes (trained on 2 so far)" in r.stderr
    tensors, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["state"]["world_size"] == 1 and meta["state"]["step"] == 12
    assert int(tensors["optim.0.step"]) == 12
    assert json.loads((out / "options.json").read_text())["world_size"] == 1


def _write_cifar(folder: Path, n=4):
    import pickle

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("preset", ["cifar10", "ffhq64"])
def test_paper_presets_build_and_step(tmp_path, preset):
    root = tmp_path / "data"
    if preset == "cifar10":
        _write_cifar(root)
    else:
        root.mkdir()
        for i in range(4):
            pixels = np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"{i}.png")
    r = _cli("train", "teacher", "--preset", preset, "--data-root", str(root), "--steps", "2", "--batch", "2",
             "--grid", "0", "--out", str(tmp_path / "run"), "--no-progress", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = load_checkpoint(tmp_path / "run" / "model.safetensors")[1]
    assert UNetConfig.from_dict(meta["config"]["unet"]) == TEACHER_PRESETS[preset].unet


def test_bad_checkpoints_are_clear_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    wrong_kind = tmp_path / "hkd.safetensors"
    save_checkpoint(wrong_kind, {"w": torch.zeros(2)}, "hkd", {}, {})
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, {"ema.w": torch.zeros(1000)}, "teacher", {}, {})
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[:-500])
    for path, msg in [(tmp_path / "missing.safetensors", "not found"), (text, "not a readable"),
                      (foreign, "not a koopscope checkpoint"),
                      (wrong_kind, "'hkd' checkpoint; this needs a teacher checkpoint"), (corrupt, "corrupt")]:
        with pytest.raises(CheckpointError, match=msg):
            load_teacher(path)


def test_cli_user_errors_are_one_line_exit_2(tmp_path):
    r = _cli("train", "teacher", "--preset", "nope", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown preset" in r.stderr
    r = _cli("train", "teacher", "--preset", "smoke", "--out", str(tmp_path / "x"),
             env={"KOOPSCOPE_FASHION_DIR": str(tmp_path / "nowhere")})
    assert r.returncode == 2 and "nowhere" in r.stderr and "Traceback" not in r.stderr


def test_help_is_fast_and_lazy():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "koopscope.cli.main", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout
    assert "torch" not in {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines()[1:]}


def test_ship_model_ships_a_teacher_byte_for_byte_with_its_lineage(chain, continued, tmp_path, monkeypatch):
    """analyses/ship_model.py on a teacher continued from another (train teacher --init)."""
    import runpy

    from koopscope.io.meta import sha256

    further, steps = continued, TEACHER_PRESETS["smoke"].train.steps
    digest, metrics = sha256(further), {"fid": 9.5, "kid_mean": 0.01, "kid_std": 0.001, "precision": 0.5,
                                        "recall": 0.4}
    ev, rows, models = tmp_path / "eval.json", tmp_path / "rows.json", tmp_path / "models"
    rows.write_text(json.dumps({"rows": [{"sha256": s, "count": 8, "seeds": [0, 7], **metrics}
                                         for s in (digest, "another")]}))

    def ship(evaluated: str, *extra: str):
        ev.write_text(json.dumps({"teacher": "t", "teacher_sha256": evaluated, "count": 8, "seed": 0,
                                  "reference": {"count": 8}, "floor": metrics,
                                  "samplers": [{"name": "Heun 18", "nfe": 35, **metrics}]}))
        script = str(Path(__file__).resolve().parent.parent / "analyses/ship_model.py")
        monkeypatch.setattr("sys.argv", [script, str(further), "--eval-teacher", str(ev), "--fid-rows", str(rows),
                                         "--models", str(models), *extra])
        runpy.run_path(script, run_name="__main__")

    with pytest.raises(SystemExit, match="not this teacher"):
        ship("another")
    assert not models.exists()
    ship(digest)
    dest = models / "teacher-smoke.safetensors"
    assert dest.read_bytes() == further.read_bytes()
    rec = json.loads(dest.with_suffix(".json").read_text())
    assert [(r["sha256"], r["step"]) for r in rec["lineage"]] == [(digest, 3), (sha256(chain[0]), steps)]
    assert rec["lineage"][0]["images_seen"] == 3 * TEACHER_PRESETS["smoke"].train.batch and rec["train"]["steps"] == 3
    assert rec["sha256"] == digest and len(rec["fid_vs_steps"]) == 1 and rec["fid"]["samplers"][0]["fid"] == 9.5
    # a teacher kept where it lies (--models its folder, --name its stem) gains the JSON, the file untouched
    before = further.stat().st_mtime_ns
    ship(digest, "--models", str(further.parent), "--name", further.stem)
    assert further.stat().st_mtime_ns == before and further.read_bytes() == dest.read_bytes()
    assert json.loads(further.with_suffix(".json").read_text())["lineage"] == rec["lineage"]


def test_a_warm_start_chain_is_found_through_the_shipped_models(tmp_path):
    """A run made in another checkout records an init path that is gone here: the chain goes on through the shipped
    model with the recorded sha256, and stops (metadata None) at a digest that nothing here holds."""
    from koopscope.io.meta import images_seen, read_meta, sha256, warm_starts
    from koopscope.models import SHIPPED_TEACHER

    shipped = read_meta(SHIPPED_TEACHER)
    moved = {"provenance": {"init": str(tmp_path / "gone" / "teacher-fashion.safetensors"),
                            "init_sha256": sha256(SHIPPED_TEACHER), "images_seen": 1000}}
    digest, parent = next(warm_starts(moved))
    assert digest == sha256(SHIPPED_TEACHER) and parent == shipped
    assert images_seen(moved) == 1000 + images_seen(shipped) > 1000
    unknown = {"provenance": {"init": str(SHIPPED_TEACHER), "init_sha256": "0" * 64, "images_seen": 1000}}
    assert list(warm_starts(unknown)) == [("0" * 64, None)] and images_seen(unknown) == 1000


def test_a_warm_start_chain_is_found_through_the_committed_snapshots(continued, tmp_path, monkeypatch):
    """A run on another machine started from a snapshot that this checkout holds under checkpoints/: found by name
    and sha256 there, its own chain followed on."""
    import shutil

    from koopscope.io.meta import images_seen, read_meta, sha256, warm_starts

    committed = tmp_path / "checkpoints"
    committed.mkdir()
    shutil.copy(continued, committed / "teacher-cont-step0000003.safetensors")
    monkeypatch.setattr("koopscope.io.meta.COMMITTED", committed)
    there = {"provenance": {"init": "/elsewhere/runs/teacher-cont-step0000003.safetensors",
                            "init_sha256": sha256(continued), "images_seen": 1000}}
    chain = list(warm_starts(there))
    assert chain[0] == (sha256(continued), read_meta(continued)) and len(chain) == 2 and chain[1][1] is not None
    assert images_seen(there) == 1000 + images_seen(read_meta(continued))
    renamed = {"provenance": {"init": "/elsewhere/runs/model-step0000003.safetensors",   # committed as another name
                              "init_sha256": sha256(continued), "images_seen": 1000}}
    assert list(warm_starts(renamed)) == chain


def test_average_is_the_mean_of_the_snapshots_ema_weights(chain, continued, tmp_path):
    """`train average`: a loadable teacher whose weights are the snapshots' mean, the last one's lineage and the
    snapshots named; one snapshot, or a checkpoint of another network, is a one-line error and writes nothing."""
    from koopscope.io.checkpoint import prefixed
    from koopscope.io.meta import images_seen, read_meta, sha256

    out = tmp_path / "mean.safetensors"
    r = _cli("train", "average", str(chain[0]), str(continued), "--out", str(out))
    assert r.returncode == 0, r.stderr
    (a, _), (b, _), (m, meta) = (load_checkpoint(p) for p in (chain[0], continued, out))
    a, b, m = prefixed(a, "ema"), prefixed(b, "ema"), prefixed(m, "ema")
    assert m.keys() == a.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    for k in a:
        expect = (a[k].double() + b[k].double()) / 2 if a[k].is_floating_point() else b[k]
        assert m[k].dtype == a[k].dtype and torch.allclose(m[k].double(), expect, atol=1e-6), k
    assert [s["sha256"] for s in meta["provenance"]["averaged"]] == [sha256(chain[0]), sha256(continued)]
    assert images_seen(meta) == images_seen(read_meta(continued))
    load_teacher(out)

    other = tmp_path / "other.safetensors"
    tensors, meta = load_checkpoint(continued)
    save_checkpoint(other, tensors, "teacher", {**meta["config"], "sampler_steps": 5}, meta["provenance"])
    for args, message in (([str(continued)], "at least two"), ([str(continued), str(other)], "same network")):
        r = _cli("train", "average", *args, "--out", str(tmp_path / "bad.safetensors"))
        assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "bad.safetensors").exists()
