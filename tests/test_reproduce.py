"""`koopscope reproduce`: the smoke preset end to end (outputs checked, current stages skipped, a changed output
redone), its errors, and the committed fashion figures' numbers against what the current code computes."""

import json
import math
from pathlib import Path

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from koopscope.cli.main import app
from koopscope.reproduce import Layout, plan

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["teacher", "trajectories", "hkd", "teacher-samples", "hkd-samples", "spectrum", "consistency",
         "trajectory", "editing", "inpainting"]


def invoke(*args):
    return CliRunner().invoke(app, ["reproduce", *map(str, args), "--no-progress"])


def states(output: str) -> dict[str, str]:
    return {ln.split()[0]: ln.split()[1] for ln in output.splitlines() if ln.split() and ln.split()[0] in SMOKE}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    r = invoke("--out", out)
    assert r.exit_code == 0, r.output
    return out, r.output


def test_smoke_writes_every_output(smoke):
    out, output = smoke
    assert states(output) == dict.fromkeys(SMOKE, "ran")
    stages = plan("smoke", Layout.of("smoke", out, None))
    assert [s.name for s in stages] == SMOKE
    for path in (p for s in stages for p in s.outputs):
        assert path.stat().st_size > 0, path
        if path.suffix == ".png":
            assert imread(path).shape[0] > 50, path
        if path.suffix == ".pdf":
            assert path.read_bytes()[:5] == b"%PDF-", path
    res = out / "results"
    trajectory = json.loads((res / "trajectory.json").read_text())
    assert len(trajectory["rmse_normalised"]) == len(trajectory["sigmas"]) and trajectory["sigmas"][-1] == 0
    assert all(math.isfinite(v) and v >= 0 for v in trajectory["rmse_image"])
    consistency = json.loads((res / "consistency_smoke.json").read_text())
    assert consistency["min_explained"] <= 1
    editing = json.loads((res / "editing.json").read_text())
    assert editing["count"] == 8 and all(r["latent_outside"] == 0 for r in editing["locality"]["aware"])
    manifest = json.loads((res / "reproduce.json").read_text())
    assert set(manifest) == set(SMOKE) and all(len(m["key"]) == 64 for m in manifest.values())


def test_current_stages_are_skipped_and_a_changed_output_is_redone(smoke):
    out, _ = smoke
    figure = out / "figures" / "editing.png"
    stamps = {p: p.stat().st_mtime_ns for p in (out / "figures").iterdir()}
    r = invoke("--out", out)
    assert r.exit_code == 0 and states(r.output) == dict.fromkeys(SMOKE, "current"), r.output
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "figures").iterdir()}
    figure.write_bytes(b"not the figure")
    r = invoke("--out", out, "--list")
    assert r.exit_code == 0 and "editing          to run" in r.output, r.output
    r = invoke("--out", out)
    assert r.exit_code == 0, r.output
    assert states(r.output) == {**dict.fromkeys(SMOKE, "current"), "editing": "ran"}
    assert imread(figure).shape[0] > 50


def test_the_thread_count_leaves_stages_current(smoke):
    """A run on one thread is current for two: --threads sets how fast a stage runs, not what it makes."""
    out, _ = smoke
    r = invoke("--out", out, "--threads", "2", "--list")
    assert r.exit_code == 0 and r.output.count("current") == len(SMOKE) and "to run" not in r.output, r.output


@pytest.mark.parametrize("args, message", [
    (["--only", "nope"], "unknown stage nope"),
    (["--preset", "cifar"], "unknown preset 'cifar'"),
    (["--only", "hkd-samples"], "stage hkd-samples needs"),
    (["--threads", "0"], "--threads must be at least 1"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    r = invoke("--out", tmp_path / "out", *args)
    assert r.exit_code == 2 and r.output.startswith("error: ") and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1


def numbers(a, b, where="") -> list[str]:
    """Where the numbers (and the structure) of two JSON values differ beyond float rounding; strings are paths
    and dates, not compared."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in numbers(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in numbers(x, y, f"{where}[{i}]")]
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return [] if a == b else [f"{where}: {a} vs {b}"]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return [] if math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-5) else [f"{where}: {a} vs {b}"]
    return [] if isinstance(a, str) and isinstance(b, str) else [f"{where}: {a!r} vs {b!r}"]


def test_committed_fashion_numbers_match_the_current_code(tmp_path):
    """The fast fashion stages rerun on the shipped models give the committed JSON beside each figure."""
    fast = {"spectrum": "spectrum_reading.json", "trajectory": "trajectory.json",
            "consistency": "consistency_fashion.json"}
    r = invoke("--preset", "fashion", "--out", tmp_path, "--only", ",".join(fast))
    assert r.exit_code == 0, r.output
    for name in fast.values():
        fresh = json.loads((tmp_path / "results" / name).read_text())
        committed = json.loads((ROOT / "analyses" / "results" / name).read_text())
        assert not numbers(fresh, committed), (name, numbers(fresh, committed)[:10])


def test_a_figure_saved_twice_is_the_same_bytes(tmp_path):
    """No date in the PDF: a rerun that draws the same figure leaves the committed files unchanged."""
    from koopscope.io.figures import pyplot, save_figure

    for name in ("a", "b"):
        fig, ax = pyplot().subplots()
        ax.plot([1, 3, 2])
        save_figure(fig, tmp_path / f"{name}.png")
    for suffix in (".png", ".pdf"):
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


def test_count_ticks_reads_as_thousands_and_millions():
    """Training-image axes read 50k and 1.5M, not 50000 run into 100000 or an offset 1e6."""
    from koopscope.io.figures import count_ticks, pyplot

    fig, ax = pyplot().subplots()
    count_ticks(ax.xaxis)
    label = ax.xaxis.get_major_formatter()
    assert [label(v, 0) for v in (0, 50_000, 320_000, 1_000_000, 2_500_000)] == ["0", "50k", "320k", "1M", "2.5M"]
    pyplot().close(fig)


def test_plain_log_ticks_label_only_the_chosen_leading_digits():
    """Log axes read 0.03, 0.05, 0.1 and leave 0.04 blank, not 4 x 10^-2 at every tick."""
    from koopscope.io.figures import plain_log_ticks, pyplot

    fig, ax = pyplot().subplots()
    plain_log_ticks(ax.yaxis, "1235")
    for formatter in (ax.yaxis.get_major_formatter(), ax.yaxis.get_minor_formatter()):
        assert [formatter(v, 0) for v in (0.03, 0.04, 0.05, 0.1, 20, 60)] == ["0.03", "", "0.05", "0.1", "20", ""]
    pyplot().close(fig)


def test_a_second_run_s_manifest_entries_survive(tmp_path):
    """Two runs with other --only stages at once: each records its stage without dropping what the other wrote
    meanwhile (the manifest is read again before each write)."""
    from koopscope.reproduce.runner import reproduce
    from koopscope.reproduce.stages import Stage

    lay = Layout(tmp_path / "figures", tmp_path / "results", tmp_path / "runs", tmp_path / "logs")
    lay.results.mkdir(parents=True)
    manifest, made = lay.results / "reproduce.json", tmp_path / "made.txt"
    source = tmp_path / "input.txt"
    source.write_text("x")
    other = '{"other": {"key": "k", "seconds": 1, "finished": "", "outputs": {}}}'
    script = (f"import pathlib; pathlib.Path({str(manifest)!r}).write_text({other!r}); "
              f"pathlib.Path({str(made)!r}).write_text('done')")
    stage = Stage("mine", "a stage that another run races", ["-c", script], [source], [made], Path(__file__))
    assert reproduce([stage], lay, progress=False) == [("mine", "ran", pytest.approx(0, abs=60))]
    assert set(json.loads(manifest.read_text())) == {"other", "mine"}
