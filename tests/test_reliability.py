"""Training runs are reproducible, refuse unsafe or impossible requests, and survive damaged logs."""

import fcntl
import json
import shutil

import pytest
import torch
from checks import assert_same_checkpoints
from torch import nn
from typer.testing import CliRunner

from koopscope.cli.main import app
from koopscope.errors import KoopscopeError
from koopscope.io.checkpoint import read_meta
from koopscope.train.loop import TrainConfig, train


def _teacher(out, *args):
    """`koopscope train teacher` on the smoke preset for 10 steps (unless args say otherwise)."""
    return CliRunner().invoke(app, ["train", "teacher", "--preset", "smoke", "--steps", "10", "--grid", "0",
                                    "--threads", "1", "--no-progress", "--out", str(out), *args])


def _one_line_error(r, *words):
    assert r.exit_code == 2 and r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0, r.output
    assert all(w in r.stderr for w in words), r.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 10-step smoke teacher run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    r = _teacher(out)
    assert r.exit_code == 0, r.output
    return out


class _Toy:
    """A one-parameter task whose loss is `value` times the weight: the loop without a real network."""

    kind = "toy"

    def __init__(self, value: float = 1.0):
        self.net, self.value = nn.Linear(1, 1, bias=False), value

    def wrap(self, net):
        return net

    def loss(self, model, batch_size, gen, device):
        return model.weight.sum() * self.value, {}

    def config(self):
        return {}

    def data_provenance(self):
        return {}


def test_same_seed_gives_the_same_model(run, tmp_path):
    torch.manual_seed(123)  # the global state before the run must not matter
    r = _teacher(tmp_path / "again")
    assert r.exit_code == 0, r.output
    assert_same_checkpoints(run / "checkpoint.safetensors", tmp_path / "again" / "checkpoint.safetensors")
    assert read_meta(run / "model.safetensors")["provenance"]["seed"] == 0


@pytest.mark.parametrize("args,message", [(["--batch", "16"], "train.batch=32, now 16"),
                                          (["--seed", "3"], "train.seed=0, now 3")])
def test_resume_refuses_other_settings(run, tmp_path, args, message):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _one_line_error(_teacher(out, "--resume", "--steps", "20", *args), "--resume", message, "new --out")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_finds_its_warm_start_moved_but_refuses_another(run, tmp_path):
    """A run resumed from another checkout names the same warm start by another path: accepted, since its sha256
    is the same; a warm start of other content is refused in one line."""
    moved = tmp_path / "checkout" / "init.safetensors"
    moved.parent.mkdir()
    shutil.copy(run / "model.safetensors", moved)
    out = tmp_path / "cont"
    assert _teacher(out, "--init", run / "model.safetensors", "--steps", "2").exit_code == 0
    r = _teacher(out, "--init", moved, "--resume", "--steps", "3")
    assert r.exit_code == 0, r.output
    assert read_meta(out / "model.safetensors")["provenance"]["init"] == str(moved)
    _one_line_error(_teacher(out, "--init", out / "model.safetensors", "--resume", "--steps", "4"),
                    "data.init_sha256=")


def test_resume_extends_a_run_past_a_partial_log_line(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 11, "lr": 0.0')   # a kill or a full disk mid-write
    r = _teacher(out, "--resume", "--steps", "20", "--grid", "4")   # a longer run, with a grid
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [10, 20]
    assert (out / "samples" / "step_0000020.png").exists()


def test_a_second_run_into_a_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(KoopscopeError, match="being trained by another process"):
            train(_Toy(), TrainConfig(steps=2, grid=0), out, progress=False)
    assert not (out / "options.json").exists()
    train(_Toy(), TrainConfig(steps=2, batch=1, grid=0), out, progress=False)   # once released


def test_a_nan_loss_is_logged_as_null(tmp_path):
    with pytest.raises(KoopscopeError, match="loss became nan"):
        train(_Toy(float("nan")), TrainConfig(steps=2, batch=1, log_every=1, grid=0), tmp_path / "run",
              progress=False)
    line = (tmp_path / "run" / "log.jsonl").read_text().splitlines()[0]
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in the log"))["loss"] is None


_HKD = ["train", "hkd", "--trajectories", "nowhere", "--no-progress"]
_TEACHER = ["train", "teacher", "--no-progress"]


@pytest.mark.parametrize("args,option", [
    ([*_TEACHER, "--steps", "0"], "--steps"), ([*_TEACHER, "--steps", "-1"], "--steps"),
    ([*_TEACHER, "--batch", "0"], "--batch"), ([*_TEACHER, "--batch", "-4"], "--batch"),
    ([*_TEACHER, "--grid", "-1"], "--grid"), ([*_TEACHER, "--threads", "-1"], "--threads"),
    ([*_HKD, "--steps", "0"], "--steps"), ([*_HKD, "--batch", "-4"], "--batch"),
    ([*_HKD, "--lr", "-1"], "--lr"), ([*_HKD, "--lr", "nan"], "--lr"), ([*_HKD, "--points", "0"], "--points"),
    ([*_HKD, "--intermediate", "-1"], "--intermediate"), ([*_HKD, "--latent", "-1"], "--latent"),
    (["sample", "nowhere.safetensors", "--batch", "0"], "--batch"),
    (["sample", "nowhere.safetensors", "--steps", "0"], "--steps"),
    (["demo", "--count", "0"], "--count"), (["demo", "--threads", "-1"], "--threads"),
])
def test_impossible_numbers_are_refused_before_any_work(tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")],
                           env={"KOOPSCOPE_FASHION_DIR": str(tmp_path / "no-data")})
    _one_line_error(r, option)
    assert not (tmp_path / "out").exists()
