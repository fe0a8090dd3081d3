"""Trajectory stores: match the sampler, resume exactly, refuse mixed data; loader, CLI, torchrun."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from koopscope.cli.main import app
from koopscope.diffusion.samplers import karras_sigmas, sample, seeded_noise
from koopscope.diffusion.teacher import build_teacher
from koopscope.diffusion.unet import UNetConfig
from koopscope.errors import KoopscopeError
from koopscope.io.checkpoint import provenance, save_checkpoint, with_prefix
from koopscope.trajectories import TrajectoryStore, generate
from koopscope.trajectories import store as S

torch.set_num_threads(1)
SHAPE = (1, 8, 8)
STEPS = 4   # K = 5 grid times


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """An untrained tiny teacher with random (non-zero) weights, saved as a real checkpoint."""
    torch.manual_seed(0)
    cfg = UNetConfig(img_channels=1, resolution=8, channels=8, channel_mult=(1, 2), blocks=1,
                     attn_resolutions=())
    net = build_teacher(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    path = tmp_path_factory.mktemp("teacher") / "model.safetensors"
    save_checkpoint(path, with_prefix(net.state_dict(), "ema"), "teacher",
                    {"unet": cfg.to_dict(), "sampler_steps": STEPS, "image_shape": list(SHAPE)}, provenance())
    return path, net.eval()


@pytest.fixture(scope="module")
def reference(teacher, tmp_path_factory):
    """8 trajectories in one uninterrupted run, two shards of 4."""
    out = tmp_path_factory.mktemp("ref") / "store"
    generate(teacher[0], out, 8, batch=8, shard_size=4, progress=False)
    return TrajectoryStore(out)


def _all(store):
    return torch.stack([store[i] for i in range(len(store))])


def test_states_match_sampler(teacher, reference):
    net = teacher[1]
    assert len(reference) == 8 and reference.complete and reference.image_shape == SHAPE
    assert torch.equal(reference.sigmas, karras_sigmas(STEPS))
    assert reference.manifest["steps"] == STEPS and reference.manifest["nfe_per_trajectory"] == 2 * STEPS - 1
    assert reference[0].shape == (STEPS + 1, *SHAPE) and reference[0].dtype == torch.float32
    assert reference.seeds.tolist() == list(range(8))
    x = _all(reference)
    assert torch.equal(x[:, 0], (80 * seeded_noise(range(8), SHAPE)).float())
    final, _ = sample(net, range(8), SHAPE, steps=STEPS)
    assert torch.equal(x[:, -1], final.float())
    assert x[:, -1].abs().max() < 80   # really integrated


def test_batch_independent_and_seed_offset(teacher, reference, tmp_path):
    generate(teacher[0], tmp_path / "a", 5, batch=3, shard_size=2, seed_offset=3, progress=False)
    a = TrajectoryStore(tmp_path / "a")
    assert a.seeds.tolist() == [3, 4, 5, 6, 7]
    torch.testing.assert_close(_all(a), _all(reference)[3:], rtol=1e-5, atol=1e-5)


def test_resume_after_kill(teacher, reference, tmp_path, monkeypatch):
    out = tmp_path / "s"
    real = S.write_shard

    def dies_on_second(path, rank, index, states, seeds):
        if index == 1:   # killed while writing shard 1: a stray temp file and an unlisted shard file
            (path / ".shard-r0-00001.npy.xyz.tmp").write_bytes(b"half")
            (path / "shard-r0-00001.npy").write_bytes(b"garbage")
            raise KeyboardInterrupt
        return real(path, rank, index, states, seeds)

    monkeypatch.setattr(S, "write_shard", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        generate(teacher[0], out, 8, batch=4, shard_size=4, progress=False)
    assert len(TrajectoryStore(out)) == 4   # the stray files are not read as data
    monkeypatch.setattr(S, "write_shard", real)
    r = generate(teacher[0], out, 8, batch=4, shard_size=4, progress=False)
    assert (r.existing, r.generated, r.total) == (4, 4, 8)
    store = TrajectoryStore(out)
    assert [e["index"] for e in store.shards] == [0, 1]
    assert torch.equal(_all(store), _all(reference))
    assert not list(out.glob(".*.tmp"))
    again = generate(teacher[0], out, 8, shard_size=None, progress=False)   # complete: nothing to do
    assert (again.existing, again.generated) == (8, 0)


def test_corrupt_listed_shard_is_regenerated(teacher, reference, tmp_path):
    out = tmp_path / "s"
    generate(teacher[0], out, 8, batch=8, shard_size=4, progress=False)
    (out / "shard-r0-00001.npy").write_bytes(b"truncated")
    with pytest.raises(KoopscopeError, match="missing or corrupt"):
        TrajectoryStore(out)
    r = generate(teacher[0], out, 8, batch=8, progress=False)
    assert (r.existing, r.total) == (4, 8)
    assert torch.equal(_all(TrajectoryStore(out)), _all(reference))


def test_refuses_mixing(teacher, reference, tmp_path):
    with pytest.raises(KoopscopeError, match=r"other settings: steps=4 \(asked 3\)"):
        generate(teacher[0], reference.path, 8, steps=3, progress=False)
    with pytest.raises(KoopscopeError, match="shard_size"):
        generate(teacher[0], reference.path, 8, shard_size=2, progress=False)
    with pytest.raises(KoopscopeError, match="does not fit --count 6"):
        generate(teacher[0], reference.path, 6, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(KoopscopeError, match="not empty and not a trajectory store"):
        generate(teacher[0], tmp_path, 4, progress=False)
    with pytest.raises(KoopscopeError, match="count must be positive"):
        generate(teacher[0], tmp_path / "x", 0, progress=False)


def test_store_format_version(reference, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    for f in reference.path.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    header = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**header, "format": 99}))
    with pytest.raises(KoopscopeError, match="format 99 .* reads format 1"):
        TrajectoryStore(out)
    with pytest.raises(KoopscopeError, match="not a trajectory store"):
        TrajectoryStore(tmp_path)


def test_sample(reference):
    g = torch.Generator().manual_seed(0)
    b = reference.sample(6, 3, generator=g)
    assert b.x.shape == (6, 3, *SHAPE) and b.index.shape == (6, 3) and b.x0.shape == (6, *SHAPE)
    assert (b.index[:, 0] == 0).all() and (b.index[:, 1:] > 0).all() and (b.index[:, 1:] < STEPS).all()
    assert (b.index.diff(dim=1) > 0).all()
    full = _all(reference)
    rows = [next(i for i in range(8) if torch.equal(full[i, 0], b.x[k, 0])) for k in range(6)]
    for k, i in enumerate(rows):
        assert torch.equal(b.x[k], full[i, b.index[k]]) and torch.equal(b.x0[k], full[i, -1])
    assert reference.sample(2, STEPS, generator=g).index.tolist()[0] == list(range(STEPS))
    with pytest.raises(KoopscopeError, match="times_per_traj"):
        reference.sample(2, STEPS + 1)
    assert torch.equal(pickle.loads(pickle.dumps(reference))[7], reference[7])   # DataLoader workers


def test_cli(teacher, reference, tmp_path):
    runner = CliRunner()
    args = ["trajectories", str(teacher[0]), "--out", str(tmp_path / "s"), "--count", "8",
            "--shard-size", "4", "--no-progress"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "holds 8/8 (0 already there, 8 generated)" in r.output
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "(8 already there, 0 generated)" in r.output
    assert torch.equal(_all(TrajectoryStore(tmp_path / "s")), _all(reference))
    (tmp_path / "foreign.txt").write_text("not a checkpoint")
    t = str(tmp_path / "t")
    for bad in ([str(tmp_path / "foreign.txt"), "--out", t, "--count", "4"],   # not a checkpoint
                [str(teacher[0]), "--out", t, "--count", "0"],
                [str(teacher[0]), "--out", str(tmp_path / "s"), "--count", "8", "--steps", "3"]):
        r = runner.invoke(app, ["trajectories", *bad])
        assert r.exit_code == 2, r.output
        assert r.output.count("\n") == 1 and r.output.startswith("error: ")


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with gloo is unavailable")
def test_torchrun_two_processes(teacher, reference, tmp_path):
    """One process makes 4, two ranks extend to 8 (rank j % 2 writes shard j); a rank-0 error stops both."""
    out = tmp_path / "s"
    generate(teacher[0], out, 4, batch=2, shard_size=2, progress=False)
    script = tmp_path / "run.py"
    script.write_text("from koopscope.cli.main import app\napp()\n")

    def torchrun(*args):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), "trajectories", str(teacher[0]), "--out", str(out), "--batch", "2",
               "--no-progress", *args]
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=Path(__file__).parent.parent)

    r = torchrun("--count", "8")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("holds 8/8 (4 already there, 4 generated)") == 1
    store = TrajectoryStore(out)
    assert [e["file"] for e in store.shards] == ["shard-r0-00000.npy", "shard-r0-00001.npy",
                                                 "shard-r0-00002.npy", "shard-r1-00003.npy"]
    torch.testing.assert_close(_all(store), _all(reference), rtol=1e-5, atol=1e-5)
    r = torchrun("--count", "8", "--steps", "3")
    assert r.returncode != 0 and r.stderr.count("error: ") == 2 and "other settings" in r.stderr


def test_finals_are_the_last_states_in_batches(reference):
    batches = list(reference.finals(count=5, batch=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    expected = torch.stack([reference[i][-1] for i in range(5)]).clamp(-1, 1)
    assert torch.equal(torch.cat(batches), expected)
    assert sum(len(b) for b in reference.finals()) == len(reference)
