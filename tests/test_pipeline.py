"""The README's first command end to end (`koopscope demo`: teacher -> trajectories -> HKD -> samples), its
resume, and the analyses scripts' report modes on the committed results."""

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from koopscope.cli.main import app
from koopscope.generators import load_generator
from koopscope.io.meta import read_meta

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_the_chain_and_resumes(tmp_path):
    args = ["demo", "--out", str(tmp_path / "demo"), "--count", "8", "--threads", "1", "--no-progress"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    hkd = tmp_path / "demo" / "hkd" / "model.safetensors"
    assert read_meta(hkd)["kind"] == "hkd" and (tmp_path / "demo" / "hkd_samples.png").stat().st_size > 0
    assert load_generator(hkd)(range(2)).shape == (2, 1, 16, 16)
    before = hkd.stat().st_mtime_ns
    r = CliRunner().invoke(app, args)   # everything finished: nothing is retrained
    assert r.exit_code == 0 and hkd.stat().st_mtime_ns == before, r.output


def test_analysis_reports_rebuild_from_the_committed_results(tmp_path):
    """--report reads a copy of the committed results (the script may annotate it) and writes table and figure."""
    for script, extra in (("comparison.py", ["--teacher", "x", "--table", str(tmp_path / "comparison.md")]),
                          ("ablation_consistency.py", [])):
        name = script.removesuffix(".py")
        results = tmp_path / f"{name}.json"
        results.write_bytes((ROOT / "analyses" / "results" / f"{name}.json").read_bytes())
        r = subprocess.run([sys.executable, str(ROOT / "analyses" / script), "--trajectories", "x", *extra,
                            "--report", "--results", str(results), "--figure", str(tmp_path / name)],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (tmp_path / f"{name}.png").is_file() and "|" in r.stdout


def test_comparison_speeds_remeasures_trained_rows_side_by_side(tmp_path):
    """--speeds times every row that has a run (its model at the budget), leaves the teacher rows alone."""
    import json

    import torch
    from checks import tiny_checkpoints

    torch.manual_seed(0)
    _, hkd = tiny_checkpoints(tmp_path, 4)
    (tmp_path / "run").mkdir()
    hkd.rename(tmp_path / "run" / "model-step0000002.safetensors")
    results = json.loads((ROOT / "analyses/results/comparison.json").read_text())
    results["rows"] = {"EDM Heun 18": results["rows"]["EDM Heun 18"],
                       "hkd": {**results["rows"]["hkd"], "run": str(tmp_path / "run"), "steps": 2, "images_per_s": 0}}
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(results))
    r = subprocess.run([sys.executable, str(ROOT / "analyses/comparison.py"), "--trajectories", "x", "--teacher", "x",
                        "--speeds", "--results", str(path), "--table", str(tmp_path / "t.md"),
                        "--figure", str(tmp_path / "f")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(path.read_text())["rows"]
    assert rows["hkd"]["images_per_s"] > 0 and "hkd: " in r.stdout
    assert rows["EDM Heun 18"] == results["rows"]["EDM Heun 18"]


def test_comparison_refuses_teacher_rows_of_another_teacher(tmp_path):
    """The table's teacher rows must score the teacher the methods are distilled from: the first teacher's results
    with the shipped teacher are one line and exit 2, nothing written."""
    results = tmp_path / "comparison.json"
    r = subprocess.run([sys.executable, str(ROOT / "analyses/comparison.py"), "--trajectories", "x", "--teacher",
                        str(ROOT / "koopscope/models/teacher-fashion.safetensors"), "--teacher-rows",
                        str(ROOT / "analyses/results/eval_teacher-step3000.json"), "--results", str(results)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr[-2000:]
    assert "scores another teacher" in r.stderr and not results.exists()
