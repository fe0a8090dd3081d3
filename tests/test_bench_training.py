"""The training-throughput benchmark (--quick), bf16 autocast in the training loop on CPU, and the device recipe
(--smoke), so none of them rots."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from checks import TINY

from koopscope.data import load_dataset
from koopscope.diffusion.teacher import TeacherTask
from koopscope.errors import KoopscopeError
from koopscope.io.meta import read_meta
from koopscope.train.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, **kw)


def test_bench_training_quick(tmp_path):
    r = _run(sys.executable, "analyses/bench_training.py", "--quick", "--out", str(tmp_path / "b.json"),
             "--figure", str(tmp_path / "b.png"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "b.json").read_text())
    assert {"preset", "threads", "repeats", "steps", "tolerance", "win", "winners", "teacher", "hkd"} <= res.keys()
    for model in ("teacher", "hkd"):
        by = {v["name"]: v for v in res[model]}
        assert {"fp32", "bf16", "channels_last", "compile", "batch x2", "native 28x28", "channels x2"} == by.keys()
        assert by["fp32"]["ratio"] == 1.0
        for v in res[model]:
            if v["status"] == "ok":
                assert v["images_per_s"] > 0 and v["ratio"] > 0 and len(v["seconds"]) == res["repeats"]
            else:
                assert v["reason"]
        for name in ("bf16", "channels_last"):
            assert -1 <= by[name]["grad_cosine"] <= 1 + 1e-6 and by[name]["loss_rel_diff"] >= 0
        assert by["compile"]["status"] == "skipped"   # --quick does not compile
    assert {v["name"]: v["status"] for v in res["hkd"]}["native 28x28"] == "not applicable"
    assert {v["name"]: v["status"] for v in res["hkd"]}["channels x2"] == "not applicable"
    wide = {v["name"]: v for v in res["teacher"]}["channels x2"]
    assert wide["status"] == "ok" and "grad_cosine" not in wide and not wide["wins"]
    assert (tmp_path / "b.png").stat().st_size > 0 and (tmp_path / "b.pdf").stat().st_size > 0


def test_bench_training_refuses_bad_numbers():
    r = _run(sys.executable, "analyses/bench_training.py", "--repeats", "0")
    assert r.returncode == 2 and "--repeats must be at least 1, got 0" in r.stderr


def _fixed_loss(task: TeacherTask) -> float:
    with torch.no_grad():
        return float(task.loss(task.net, 256, torch.Generator().manual_seed(7), torch.device("cpu"))[0])


def test_amp_bf16_trains_on_cpu(tmp_path):
    """TrainConfig.amp = "bf16" autocasts the loss on CPU too, and training with it lowers the loss."""
    torch.manual_seed(0)
    task = TeacherTask(TINY, load_dataset("fashion", size=8, limit=512), sampler_steps=4)
    before = _fixed_loss(task)
    cfg = TrainConfig(steps=40, batch=32, lr=3e-3, warmup=5, ema_halflife=200, log_every=10, ckpt_every=40,
                      grid=0, amp="bf16", threads=1)
    train(task, cfg, tmp_path / "run", progress=False)
    assert _fixed_loss(task) < 0.8 * before
    assert json.loads((tmp_path / "run" / "options.json").read_text())["train"]["amp"] == "bf16"
    with pytest.raises(KoopscopeError, match="--amp must be one of: none, bf16"):
        train(task, replace(cfg, amp="fp16"), tmp_path / "other", progress=False)


def test_device_train_smoke(tmp_path):
    r = _run("bash", "analyses/device_train.sh", "--smoke", "--runs", str(tmp_path / "runs"), "--dest",
             str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    for name in ("teacher.safetensors", "hkd.safetensors", "teacher-log.jsonl", "hkd-log.jsonl"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    for kind in ("teacher", "hkd"):
        assert json.loads((tmp_path / "runs" / kind / "options.json").read_text())["train"]["amp"] == "bf16"
    # a given teacher distilled by device_distil.sh: a store, side-by-side runs (squared error and pseudo-Huber)
    out, runs, teacher = tmp_path / "out2", tmp_path / "runs2", tmp_path / "out" / "teacher.safetensors"
    r = _run("bash", "analyses/device_distil.sh", "--smoke", "--runs", str(runs), "--dest", str(out), "--budget", "90",
             "--teacher", str(teacher), "--init", str(tmp_path / "out" / "hkd.safetensors"), "--lrs", "2e-3", "--huber")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["hkd-lr2e-3-huber-mid.safetensors", "hkd-lr2e-3-huber.safetensors",
                                                     "hkd-lr2e-3-mid.safetensors", "hkd-lr2e-3.safetensors",
                                                     "logs.tar.gz"]
    for name, distance in (("lr2e-3", "mse"), ("lr2e-3-huber", "huber")):
        options = json.loads((runs / f"hkd-{name}" / "options.json").read_text())
        assert options["model"]["loss"]["distance"] == distance
        assert (options["model"]["loss"]["latent"] == 150) == (distance == "huber")
        assert options["train"]["lr"] == 2e-3 and options["train"]["rampdown"] == options["train"]["steps"] // 2
        assert (options["model"]["init"], options["model"]["teacher"]) == (str(tmp_path / "out" / "hkd.safetensors"),
                                                                           str(teacher))
        assert read_meta(out / f"hkd-{name}.safetensors")["state"]["step"] == options["train"]["steps"]
    assert json.loads((runs / "store" / "manifest.json").read_text())["count"] == 96
    again = _run("bash", "analyses/device_distil.sh", "--smoke", "--runs", str(runs), "--dest", str(out),
                 "--teacher", str(teacher))
    assert again.returncode == 2 and "exists" in again.stderr
    for args, said in ((["--teacher", str(tmp_path / "no.pt")], "no such checkpoint"), ([], "pass --teacher"),
                       (["--teacher", str(teacher), "--count", "0"], "positive integers"),
                       (["--bogus"], "unknown option --bogus")):
        r = _run("bash", "analyses/device_distil.sh", "--dest", str(tmp_path), *args)
        assert r.returncode == 2 and said in r.stderr, r.stderr
    bad = _run("bash", "analyses/device_train.sh", "--bogus")
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr
    nowhere = _run("bash", "analyses/device_train.sh", "--smoke", "--runs", str(tmp_path / "runs3"), "--dest", "")
    assert nowhere.returncode == 2 and "no destination" in nowhere.stderr
