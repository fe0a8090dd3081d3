"""Trajectory stores resume and grow, training refuses a part of one, `koopscope modes` streams its samples, and
koopscope's plots keep a notebook's backend (reliability issue, items 7, 9 and 10)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import xarray as xr
from checks import tiny_checkpoints
from nbclient import NotebookClient
from typer.testing import CliRunner

import koopscope
import koopscope.progress
from koopscope.cli.main import app
from koopscope.diffusion.teacher import save_untrained
from koopscope.errors import KoopscopeError
from koopscope.spectral import band_reconstructions
from koopscope.train.presets import TEACHER_PRESETS
from koopscope.trajectories import TrajectoryStore
from koopscope.trajectories import store as S
from koopscope.trajectories.generate import SHARD_SIZE

SHIPPED = Path(koopscope.__file__).parent / "models" / "hkd-fashion.safetensors"
OLD_STORE = Path("/root/koopscope-runs/traj-fashion")   # written by the code before this change; only read here


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(r, *words):
    assert r.exit_code == 2 and r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0, r.output
    assert all(w in r.stderr for w in words), r.stderr


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _store(teacher, out, count, *args):
    """`koopscope trajectories` in shards of 4 (unless args give another size)."""
    size = [] if "--shard-size" in args else ["--shard-size", 4]
    return _cli("trajectories", teacher, "--out", out, "--count", count, *size, "--threads", 1, "--no-progress",
                *args)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """An untrained teacher of the smoke preset's network (16x16, 6 steps) with random non-zero weights."""
    torch.manual_seed(0)
    p = TEACHER_PRESETS["smoke"]
    return save_untrained(tmp_path_factory.mktemp("teacher") / "teacher.safetensors", p.unet, p.sampler_steps, 0.2)


@pytest.fixture(scope="module")
def store6(teacher, tmp_path_factory):
    """A finished store of 6 trajectories: shards [0, 4) and [4, 6) (copy it before changing it)."""
    out = tmp_path_factory.mktemp("store6") / "store"
    assert _store(teacher, out, 6).exit_code == 0
    return out


def _train(method, store, teacher, out):
    return _cli("train", method, "--trajectories", store, "--teacher", teacher, "--preset", "smoke", "--steps", 1,
                "--grid", 0, "--threads", 1, "--no-progress", "--out", out)


# --- item 7: trajectory stores ------------------------------------------------------------------------------------

def test_a_store_grown_to_a_larger_count_is_the_store_made_at_once(teacher, store6, tmp_path):
    grown = tmp_path / "grown"
    shutil.copytree(store6, grown)
    r = _store(teacher, grown, 12)
    assert r.exit_code == 0, r.output
    assert "holds 12/12 (4 already there, 8 generated)" in r.stdout   # the short shard [4, 6) is made again
    assert _store(teacher, tmp_path / "direct", 12).exit_code == 0
    assert _files(grown) == _files(tmp_path / "direct")   # bit for bit, manifests included
    assert len(TrajectoryStore(grown).require_complete()) == 12


def test_the_default_shard_is_a_few_hundred_trajectories(teacher, tmp_path):
    r = _cli("trajectories", teacher, "--out", tmp_path / "s", "--count", 1, "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["shard_size"] == SHARD_SIZE == 256


@pytest.mark.parametrize("args,words", [
    (["--steps", 3], ["other settings: steps=6 (asked 3)"]),
    (["--solver", "euler"], ["solver='heun' (asked 'euler')"]),
    (["--shard-size", 2], ["shard_size=4 (asked 2)"]),
    (["--seed-offset", 1], ["seed_offset=0 (asked 1)"]),
])
def test_growing_with_other_settings_is_refused(teacher, store6, tmp_path, args, words):
    store = tmp_path / "store"
    shutil.copytree(store6, store)
    before = _files(store)
    _one_line_error(_store(teacher, store, 12, *args), str(store), *words)
    assert _files(store) == before


def test_shrinking_a_store_is_refused(teacher, store6, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(store6, store)
    before = _files(store)
    _one_line_error(_store(teacher, store, 4), "holds seeds [4, 6) as shard 1", "does not fit --count 4")
    assert _files(store) == before


@pytest.mark.parametrize("method", ["hkd", "kd"])
def test_training_refuses_a_store_a_kill_left_incomplete(teacher, store6, tmp_path, monkeypatch, method):
    store = tmp_path / "store"
    shutil.copytree(store6, store)
    real = S.write_shard

    def killed_at_shard_2(path, rank, index, states, seeds):
        if index == 2:
            raise KeyboardInterrupt
        return real(path, rank, index, states, seeds)

    monkeypatch.setattr(S, "write_shard", killed_at_shard_2)
    assert _store(teacher, store, 12).exit_code == 130   # grown to 8 of 12, then killed
    monkeypatch.setattr(S, "write_shard", real)
    _one_line_error(_train(method, store, teacher, tmp_path / "run"), f"{store} is incomplete: 8 of 12 trajectories",
                    "--count 12")
    assert not (tmp_path / "run").exists()
    r = _store(teacher, store, 12)
    assert "holds 12/12 (8 already there, 4 generated)" in r.stdout, r.output


def test_training_refuses_a_store_another_process_is_writing(teacher, store6, tmp_path):
    with S.lock(store6):
        _one_line_error(_train("hkd", store6, teacher, tmp_path / "run"),
                        f"{store6} is still being written by another process (6 of 6 trajectories so far)")
        _one_line_error(_store(teacher, store6, 12), f"{store6} is being written by another process")
        with pytest.raises(KoopscopeError, match="still being written"):
            TrajectoryStore(store6).require_complete()
    assert not (tmp_path / "run").exists()
    TrajectoryStore(store6).require_complete()   # once the writer is gone


@pytest.mark.parametrize("key,name", [("file", "/etc/passwd"), ("file", "../x.npy"), ("seeds_file", "sub/s.npy"),
                                      ("seeds_file", "..")])
def test_a_manifest_naming_files_outside_the_store_is_refused(teacher, store6, tmp_path, key, name):
    store = tmp_path / "store"
    shutil.copytree(store6, store)
    m = json.loads((store / "manifest-r0.json").read_text())
    m["shards"][0][key] = name
    (store / "manifest-r0.json").write_text(json.dumps(m))
    before = _files(store)
    words = ["manifest-r0.json", f"shard file {name!r} is not a file name inside the store"]
    _one_line_error(_train("hkd", store, teacher, tmp_path / "run"), *words)
    _one_line_error(_store(teacher, store, 6), *words)
    assert _files(store) == before and not (tmp_path / "run").exists()


@pytest.mark.skipif(not OLD_STORE.is_dir(), reason=f"no store written by the earlier code at {OLD_STORE}")
def test_a_store_written_by_the_earlier_code_still_loads():
    stamps = {p.name: p.stat().st_mtime_ns for p in OLD_STORE.iterdir()}
    store = TrajectoryStore(OLD_STORE).require_complete()
    assert len(store) == store.manifest["count"] and store.seeds.tolist() == list(range(len(store)))
    assert store[len(store) - 1].shape == (len(store.sigmas), *store.image_shape)
    assert {p.name: p.stat().st_mtime_ns for p in OLD_STORE.iterdir()} == stamps


# --- item 9: `koopscope modes` -------------------------------------------------------------------------------------

def test_modes_streams_its_samples_under_a_progress_bar(tmp_path, monkeypatch):
    torch.manual_seed(0)
    _, hkd = tiny_checkpoints(tmp_path, 3)
    real, made = koopscope.progress.bars, []

    def recorded(enabled=True):
        made.append((enabled, real(False)))   # counted, not drawn
        return made[-1][1]

    monkeypatch.setattr(koopscope.progress, "bars", recorded)
    r = _cli("modes", "--ckpt", hkd, "--count", 10, "--columns", 2, "--out", tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert "10 samples; the grid shows the first 8" in r.stdout
    assert [(on, t.description, t.completed, t.total) for on, bar in made for t in bar.tasks] == [
        (True, "band reconstructions", 10, 10)]
    assert xr.load_dataset(tmp_path / "m" / "modes_all_isolated.nc").sizes["sample"] == 10

    from koopscope.hkd.task import load_hkd

    model, _ = load_hkd(hkd)
    done = []
    parts = band_reconstructions(model, range(10), [80.0, 1.0], batch=3, progress=done.append)
    whole = band_reconstructions(model, range(10), [80.0, 1.0], batch=10)
    assert done == [3, 3, 3, 1]
    torch.testing.assert_close(torch.from_numpy(parts.image.values), torch.from_numpy(whole.image.values))


_PEAK = ("import resource, sys\nfrom koopscope.cli.main import app\ntry:\n    app(sys.argv[1:])\nfinally:\n"
         "    print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def test_modes_memory_does_not_grow_with_the_count(tmp_path):
    def peak_mb(count):
        r = subprocess.run([sys.executable, "-c", _PEAK, "modes", "--ckpt", SHIPPED, "--count", str(count),
                            "--no-progress", "--out", tmp_path / str(count)], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return int(r.stderr.split("peak ")[-1]) / 1024   # ru_maxrss is in KiB on Linux

    small, large = peak_mb(8), peak_mb(40)   # 40: several batches, more samples than the grid shows
    assert large < small + 50, (small, large)   # it was ~18 MB more per sample


# --- item 10: plots in a notebook ----------------------------------------------------------------------------------

_CELL = """\
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

before = matplotlib.get_backend()
from koopscope.spectral.plots import plot_band_grid

ds = xr.Dataset({"image": (("band", "time", "sample", "channel", "y", "x"), np.zeros((2, 3, 1, 1, 8, 8)))},
                {"band": ["low", "high"], "sigma": ("time", [80.0, 1.0, 0.002])},
                {"mode": "isolated", "masked_levels": "all"})
fig = plot_band_grid(ds)
plt.show()
print("backend", "kept" if matplotlib.get_backend() == before else "switched", matplotlib.get_backend())
"""


def test_plots_show_inline_in_a_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")   # what Jupyter sets
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_CELL)])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    text = "".join(o.get("text", "") for o in outputs)
    assert "backend kept module://matplotlib_inline.backend_inline" in text, outputs
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs
