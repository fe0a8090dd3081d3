"""Outputs are checked before work, writes fail as one line leaving earlier files whole, runs survive a kill
between their two checkpoint writes, and malformed inputs are refused in one line (reliability issue, items 3,
5, 6, 8 and 11)."""

import contextlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from checks import tiny_checkpoints
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import koopscope
from koopscope.cli.main import app
from koopscope.io.atomic import write_json
from koopscope.io.checkpoint import provenance, read_meta, save_checkpoint
from koopscope.io.meta import META_KEY

SHIPPED = Path(koopscope.__file__).parent / "models" / "hkd-fashion.safetensors"
SMOKE = ["--preset", "smoke", "--grid", "0", "--threads", "1", "--no-progress"]


def _cli(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _one_line_error(r, *words):
    assert r.exit_code == 2 and r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0, r.output
    assert all(w in r.stderr for w in words), r.stderr


def _files(folder: Path) -> dict:
    """Every file under `folder` with its bytes: the state a refused command must leave alone."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _edit_meta(src: Path, dest: Path, edit=lambda meta: None, tensors=lambda t: None) -> Path:
    """A copy of a checkpoint with its metadata and/or tensors changed in place by `edit` / `tensors`."""
    t, meta = load_file(src), read_meta(src)
    edit(meta)
    tensors(t)
    save_file(t, dest, metadata={META_KEY: json.dumps(meta)})
    return dest


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny untrained teacher and HKD checkpoints (8x8 grey images)."""
    torch.manual_seed(0)
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpts"), 3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 10-step smoke teacher run and a 4-trajectory store of it (copy them before changing them)."""
    d = tmp_path_factory.mktemp("run")
    r = _cli("train", "teacher", *SMOKE, "--steps", "10", "--out", d / "run")
    assert r.exit_code == 0, r.output
    r = _cli("trajectories", d / "run" / "model.safetensors", "--out", d / "store", "--count", "4", "--steps", "3",
             "--threads", "1", "--no-progress")
    assert r.exit_code == 0, r.output
    return d / "run", d / "store"


def _samples(path: Path) -> Path:
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (8, 1, 8, 8), dtype=np.uint8))
    return path


# --- item 3: every output location is checked before any work -------------------------------------------------
# Every input below is missing (no checkpoint, no data): a command that did any work before checking its output
# would fail on the input instead.

def _command(name: str, tmp: Path) -> list:
    missing = tmp / "missing.safetensors"
    return {
        "fid": ["fid", tmp / "missing.npz", "--ref", tmp / "missing.npz", "--count", "8", "--no-progress", "--out"],
        "sample": ["sample", missing, "--count", "2", "--no-progress", "--out"],
        "spectrum --out": ["spectrum", missing, "--out"],
        "spectrum --plot": ["spectrum", missing, "--plot"],
        "consistency": ["consistency", missing, "--count", "2", "--no-progress", "--out"],
        "modes": ["modes", "--ckpt", missing, "--count", "1", "--columns", "2", "--out"],
        "demo": ["demo", "--count", "2", "--threads", "1", "--no-progress", "--out"],
        "train teacher": ["train", "teacher", *SMOKE, "--steps", "2", "--out"],
        "train hkd": ["train", "hkd", "--trajectories", tmp / "missing", *SMOKE, "--steps", "2", "--out"],
        "trajectories": ["trajectories", missing, "--count", "2", "--no-progress", "--out"],
    }[name]


_SUFFIX = {"fid": ".json", "sample": ".png", "spectrum --out": ".nc", "spectrum --plot": ".png"}
_NO_DATA = {"KOOPSCOPE_FASHION_DIR": "/nonexistent"}


@pytest.mark.parametrize("command", ["fid", "sample", "spectrum --out", "spectrum --plot", "consistency", "modes",
                                     "demo", "train teacher", "train hkd", "trajectories"])
def test_an_output_under_a_file_is_refused_before_any_work(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    out = tmp_path / "afile" / f"x{_SUFFIX.get(command, '')}"
    _one_line_error(_cli(*_command(command, tmp_path), out, env=_NO_DATA), "cannot write",
                    "afile is a file, not a folder")
    assert _files(tmp_path) == {Path("afile"): b"mine"}


@pytest.mark.parametrize("command,kind", [("sample", "file"), ("spectrum --out", "file"), ("fid", "file"),
                                          ("modes", "folder"), ("train teacher", "folder"), ("demo", "folder")])
def test_a_file_for_a_folder_or_a_folder_for_a_file_is_refused(tmp_path, command, kind):
    target = tmp_path / f"x{_SUFFIX.get(command, '')}"
    target.mkdir() if kind == "file" else target.write_text("mine")
    before = _files(tmp_path)
    _one_line_error(_cli(*_command(command, tmp_path), target, env=_NO_DATA), f"not a {kind}")
    assert _files(tmp_path) == before


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    """A size-limited (or read-only) tmpfs at `path`; skips where mounting is not allowed."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _koopscope(*args, fsize: int | None = None):
    """`koopscope ARGS` in a fresh process (its exit code is the process's: a crash at exit shows), with writes
    past `fsize` bytes failing as EFBIG."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "koopscope.cli.main", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          preexec_fn=limit if fsize else None)


def test_a_full_disk_mid_write_is_one_line_and_keeps_the_old_file(tmp_path):
    # the spectrum of the shipped model is ~24 MB: more than the 8 MB file system, which passes the up-front check
    with _tmpfs(tmp_path / "disk", "size=8m") as disk:
        (disk / "s.nc").write_bytes(b"the previous spectrum")
        r = _koopscope("spectrum", SHIPPED, "--out", disk / "s.nc")
        assert r.returncode == 2 and r.stderr == f"error: cannot write {disk / 's.nc'}: No space left on device\n", \
            (r.returncode, r.stderr[-2000:])
        assert _files(disk) == {Path("s.nc"): b"the previous spectrum"}   # no partial file, no temp file


@pytest.mark.parametrize("options,message", [("size=1m", "MiB free"), ("ro,size=8m", "is not writable")])
def test_a_full_or_read_only_disk_is_refused_before_any_work(ckpts, tmp_path, options, message):
    with _tmpfs(tmp_path / "disk", options) as disk:
        for args in (["sample", ckpts[0], "--count", "2", "--no-progress", "--out", disk / "x.png"],
                     ["train", "teacher", *SMOKE, "--steps", "2", "--out", disk / "run"]):
            _one_line_error(_cli(*args), "cannot write", message)
        assert _files(disk) == {}


def test_a_file_size_limit_mid_training_keeps_the_checkpoint(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    before = _files(out)
    r = _koopscope("train", "teacher", *SMOKE, "--steps", "20", "--resume", "--out", out, fsize=200_000)
    assert r.returncode == 2 and r.stderr.splitlines() == [f"error: cannot write {out / 'checkpoint.safetensors'}: "
                                                            "File too large"], (r.returncode, r.stderr[-2000:])
    after = _files(out)
    assert {f: after[f] for f in before if f.name != "log.jsonl"} == {f: b for f, b in before.items()
                                                                      if f.name != "log.jsonl"}
    assert set(after) == set(before)   # no temp file left behind
    r = _cli("train", "teacher", *SMOKE, "--steps", "20", "--resume", "--out", out)   # room again: it continues
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [10, 20]


# --- item 5: a kill between the checkpoint's and the model's write -----------------------------------------------

@pytest.mark.parametrize("model", ["stale", "missing"])
def test_resume_repairs_a_model_left_behind_and_removes_temp_files(run, tmp_path, model):
    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    if model == "stale":   # the previous save's model: other weights, an earlier step
        _edit_meta(run[0] / "model.safetensors", out / "model.safetensors", lambda m: m["state"].update(step=9),
                   lambda t: [v.mul_(0.5) for v in t.values() if v.is_floating_point()])
    else:
        (out / "model.safetensors").unlink()
    (out / ".model.safetensors.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (out / "samples").mkdir()
    (out / "samples" / ".step_0000010.png.k1ll3d.tmp").write_bytes(b"half a grid")
    log = (out / "log.jsonl").read_bytes()
    r = _cli("train", "teacher", *SMOKE, "--steps", "10", "--resume", "--out", out)
    assert r.exit_code == 0, r.output
    assert (out / "model.safetensors").read_bytes() == (run[0] / "model.safetensors").read_bytes()
    assert not list(out.rglob("*.tmp"))
    assert (out / "log.jsonl").read_bytes() == log


# --- item 6: a model with NaN weights is refused -----------------------------------------------------------------

def test_nan_weights_are_refused_not_tabulated_or_sampled(ckpts, tmp_path):
    teacher, hkd = ckpts

    def nan(t):
        for k, v in t.items():
            if ".koopman." in k or "backbone" in k:
                v.fill_(math.nan)

    bad_teacher, bad_hkd = (_edit_meta(c, tmp_path / f"nan-{c.name}", tensors=nan) for c in (teacher, hkd))
    for args, words in [(["sample", bad_teacher, "--count", "2", "--no-progress", "--out", tmp_path / "t.png"],
                         ["NaN or infinity", "diverged"]),
                        (["sample", bad_hkd, "--count", "2", "--no-progress", "--out", tmp_path / "h.png"],
                         ["NaN or infinity"]),
                        (["spectrum", bad_hkd, "--out", tmp_path / "s.nc"], ["Koopman generators", "NaN"])]:
        _one_line_error(_cli(*args), *words)
    assert _files(tmp_path).keys() == {Path(bad_teacher.name), Path(bad_hkd.name)}


# --- item 8: malformed inputs --------------------------------------------------------------------------------

def test_checkpoint_metadata_without_a_config_is_refused(ckpts, tmp_path):
    teacher, hkd = ckpts
    for src, args in [(teacher, ["sample", "--count", "2", "--no-progress", "--out", tmp_path / "x.png"]),
                      (hkd, ["spectrum"]), (hkd, ["sample", "--count", "2", "--out", tmp_path / "x.png"])]:
        bad = _edit_meta(src, tmp_path / f"noconfig-{src.name}", lambda m: m.pop("config"))
        _one_line_error(_cli(args[0], bad, *args[1:]), "no valid config")
    thin = _edit_meta(teacher, tmp_path / "thin.safetensors", lambda m: m["config"].pop("sampler_steps"))
    _one_line_error(_cli("sample", thin, "--out", tmp_path / "x.png"), "config lacks sampler_steps")
    assert not (tmp_path / "x.png").exists()


def _npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize("case,words", [
    ("no mu", ["has no 'mu' array"]),
    ("object mu", ["'mu'", "Python objects"]),
    ("sigma of another size", ["expected numeric mu (D,), sigma (D, D)"]),
    ("not a zip", ["is not an .npz file"]),
    ("object images", ["'images'", "Python objects"]),
])
def test_malformed_fid_npz_files_are_refused(tmp_path, case, words):
    f, meta = np.zeros((10, 4)), json.dumps({})
    ref = tmp_path / "ref.npz"
    if case == "no mu":
        _npz(ref, sigma=np.eye(4), features=f, meta=meta)
    elif case == "object mu":
        _npz(ref, mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(4), features=f, meta=meta)
    elif case == "sigma of another size":
        _npz(ref, mu=np.zeros(4), sigma=np.eye(3), features=f, meta=meta)
    elif case == "not a zip":
        ref.write_bytes(b"\x80\x04 a pickle, perhaps " * 8)
    else:
        _npz(ref, images=np.array([None, 1], dtype=object))
    r = _cli("fid", _samples(tmp_path / "s.npz"), "--ref", ref, "--count", "8", "--no-progress",
             "--out", tmp_path / "r.json")
    _one_line_error(r, *words)
    assert "pickle" not in r.stderr and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("manifest,change,words", [
    ("manifest.json", {"sigmas": "80 to 0"}, ["manifest.json", "wrong type: sigmas"]),
    ("manifest.json", {"image_shape": 16, "count": "4"}, ["wrong type: image_shape, count"]),
    ("manifest-r0.json", {"shards": [{"index": 0}]}, ["manifest-r0.json", "malformed shard list"]),
    ("manifest-r0.json", {"shards": "shard-r0-00000.npy"}, ["malformed shard list"]),
])
def test_malformed_trajectory_manifests_are_refused(run, tmp_path, manifest, change, words):
    store = tmp_path / "store"
    shutil.copytree(run[1], store)
    (store / manifest).write_text(json.dumps({**json.loads((store / manifest).read_text()), **change}))
    r = _cli("train", "hkd", "--trajectories", store, "--teacher", run[0] / "model.safetensors", *SMOKE,
             "--steps", "1", "--out", tmp_path / "hkd")
    _one_line_error(r, *words)
    assert not (tmp_path / "hkd").exists()


# --- item 11 ---------------------------------------------------------------------------------------------------

def test_a_folder_given_as_a_checkpoint_says_so(run, tmp_path):
    _one_line_error(_cli("sample", run[0], "--out", tmp_path / "x.png"), "is a folder, not a checkpoint file",
                    f"its model is {run[0] / 'model.safetensors'}")


def test_a_shape_mismatch_keeps_its_detail_on_one_line(ckpts, tmp_path):
    teacher = ckpts[0]
    wide = _edit_meta(teacher, tmp_path / "wide.safetensors", lambda m: m["config"]["unet"].update(channels=16))
    _one_line_error(_cli("sample", wide, "--out", tmp_path / "x.png"), "weights do not match the stored config",
                    "size mismatch for", "from checkpoint, the shape in current model is")


def test_a_fresh_run_into_a_run_folder_is_refused(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    before = _files(out)
    _one_line_error(_cli("train", "teacher", *SMOKE, "--steps", "10", "--out", out),
                    f"run folder {out} already holds a run; pass --resume to continue it or choose another --out")
    for f in ("checkpoint.safetensors", "model.safetensors"):   # killed before its first checkpoint
        (out / f).unlink()
    _one_line_error(_cli("train", "teacher", *SMOKE, "--steps", "10", "--out", out), "saved no checkpoint")
    assert _files(out) == {f: b for f, b in before.items() if f.suffix != ".safetensors"}   # no duplicate log lines


def test_json_writers_never_write_a_bare_nan(tmp_path):
    record = {"fid": math.nan, "kid": [1.0, math.inf], "nested": {"x": -math.inf, "t": (math.nan, 2)}}
    write_json(tmp_path / "r.json", record)
    strict = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert strict == {"fid": None, "kid": [1.0, None], "nested": {"x": None, "t": [None, 2]}}
    save_checkpoint(tmp_path / "c.safetensors", {"w": torch.zeros(1)}, "toy", {}, provenance(fid=math.nan))
    assert read_meta(tmp_path / "c.safetensors")["provenance"]["fid"] is None


def test_results_scripts_complain_about_their_arguments_in_one_line(tmp_path):
    from koopscope.io.results import append, has_row, rows, script_args_error

    ckpt = tmp_path / "a.safetensors"
    ckpt.write_bytes(b"x")
    assert script_args_error([], False) == "give checkpoints to measure, or --plot"
    assert script_args_error([], True, count=(5, 1)) is None
    assert script_args_error([ckpt], False, count=(1, 2)) == "--count must be at least 2, got 1"
    assert script_args_error([ckpt], False, blur_count=(0, 1)) == "--blur-count must be at least 1, got 0"
    assert script_args_error([ckpt, tmp_path / "b"], False, count=(3, 1)) == f"no checkpoint at {tmp_path / 'b'}"
    out = tmp_path / "r.json"
    append(out, {"sha256": "s", "count": 3})
    append(out, {"sha256": "t"}, key="blur")
    assert has_row(out, {"sha256": "s"}) and not has_row(out, {"sha256": "s", "count": 4})
    assert rows(out, "blur") == [{"sha256": "t"}] and rows(tmp_path / "none.json") == []
