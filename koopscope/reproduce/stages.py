"""The stages `koopscope reproduce` runs, per preset: each an analyses/ script or a koopscope command.

smoke    data -> teacher -> trajectories -> HKD -> every figure (small counts; a few minutes here)
fashion  the shipped teacher and student -> trajectories -> every figure and table of the README, FID included
         (hours on CPU; the training behind the shipped models is analyses/fashion_pipeline.sh)

Layout under OUT: figures/, results/ (JSON and netCDF beside the figures' numbers), runs/ (training and the
trajectory store, for fashion named by the teacher's sha256), logs/ (one log per stage), results/reproduce.json (the
manifest). Without --out the fashion preset writes into the repository's figures/ and analyses/results/, its runs under
~/koopscope-runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import KoopscopeError

ROOT = Path(__file__).resolve().parent.parent.parent   # the source checkout holding analyses/
PRESETS = ("smoke", "fashion")
# per preset: trajectories, seeds of the seed-based analyses, rows shown, FID count (0: no FID stages)
COUNTS = {"smoke": {"trajectories": 256, "seeds": 8, "rows": 2, "fid": 0},
          "fashion": {"trajectories": 5000, "seeds": 64, "rows": 4, "fid": 5000}}
# the comparison's rows come from analyses/comparison.py's training runs (hours per row); its table is rebuilt
COMPARISON = ROOT / "analyses/results/comparison.json"


@dataclass(frozen=True)
class Layout:
    figures: Path
    results: Path
    runs: Path
    logs: Path

    @classmethod
    def of(cls, preset: str, out: Path | None, runs: Path | None) -> Layout:
        if out is None and preset == "fashion":
            runs = runs or Path.home() / "koopscope-runs"
            return cls(ROOT / "figures", ROOT / "analyses/results", runs, runs / "reproduce-logs")
        out = out or Path("runs") / f"reproduce-{preset}"
        return cls(out / "figures", out / "results", runs or out / "runs", out / "logs")


@dataclass(frozen=True)
class Stage:
    name: str
    about: str
    argv: list[str]                 # run as `python ARGV...` in the checkout
    inputs: list[Path]              # files or folders whose content keys the stage
    outputs: list[Path]             # files the stage must leave behind
    code: Path                      # the file it runs (script or CLI module); it and its imports: the code version
    resume: Path | None = None      # append --resume when this checkpoint exists (an interrupted training run)


def analyses() -> Path:
    folder = ROOT / "analyses"
    if not folder.is_dir():
        raise KoopscopeError(f"koopscope reproduce runs from a source checkout: no analyses/ in {ROOT}")
    return folder


def _figure(folder: Path, stem: str) -> list[Path]:
    return [folder / f"{stem}.png", folder / f"{stem}.pdf"]


def plan(preset: str, lay: Layout, threads: int = 1) -> list[Stage]:
    """Every stage of ``preset`` in running order (each one's inputs are earlier stages' outputs or given files)."""
    if preset not in PRESETS:
        raise KoopscopeError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    a, n = analyses(), COUNTS[preset]
    th = ["--threads", str(threads)]
    fig, res = lay.figures, lay.results

    def script(name: str, args: list, inputs: list[Path], outputs: list[Path], about: str) -> Stage:
        path = a / f"{name_of[name]}.py"
        return Stage(name, about, [str(path), *map(str, args)], inputs, outputs, path)

    def command(name: str, args: list, inputs: list[Path], outputs: list[Path], about: str,
                resume: Path | None = None) -> Stage:
        # every command used here lives in the CLI module of its name (train, trajectories, consistency); the
        # entry point that dispatches to it keys the stage as an input (following its imports would take in
        # every command)
        dispatch = [ROOT / "koopscope/__main__.py", ROOT / "koopscope/cli/main.py"]
        return Stage(name, about, ["-m", "koopscope", *map(str, args)], [*inputs, *dispatch], outputs,
                     ROOT / "koopscope/cli" / f"{args[0]}.py", resume)

    name_of = {"teacher-samples": "fig_teacher_samples", "hkd-samples": "fig_hkd_samples",
               "spectrum": "spectrum_reading", "trajectory": "fig_trajectory", "editing": "fig_editing",
               "inpainting": "inpaint_compare", "eval-teacher": "eval_teacher", "eval-hkd": "eval_hkd",
               "comparison": "comparison"}
    stages = []
    if preset == "fashion":
        from ..io.meta import sha256

        teacher = ROOT / "koopscope/models/teacher-fashion.safetensors"
        hkd = ROOT / "koopscope/models/hkd-fashion.safetensors"
        # a store holds one teacher's trajectories: a newly shipped teacher gets a store of its own
        store = lay.runs / f"traj-fashion-{sha256(teacher)[:12]}"
    else:
        from ..data.fashion import fashion_dir

        teacher, hkd = lay.runs / "teacher/model.safetensors", lay.runs / "hkd/model.safetensors"
        store = lay.runs / "trajectories"
        stages.append(command("teacher", ["train", "teacher", "--preset", preset, "--out", teacher.parent,
                                          *th, "--no-progress"], [fashion_dir()], [teacher],
                              "train the EDM teacher", resume=teacher.parent / "checkpoint.safetensors"))
    stages.append(command("trajectories", ["trajectories", teacher, "--out", store, "--count", n["trajectories"],
                                           *th, "--no-progress"], [teacher], [store / "manifest.json"],
                          "the teacher's ODE trajectories"))
    if preset != "fashion":
        stages.append(command("hkd", ["train", "hkd", "--preset", preset, "--trajectories", store, "--teacher",
                                      teacher, "--out", hkd.parent, *th, "--no-progress"], [teacher, store], [hkd],
                              "distil the HKD student", resume=hkd.parent / "checkpoint.safetensors"))
    p, seeds, rows = preset, n["seeds"], n["rows"]
    stages += [
        script("teacher-samples", [teacher, "--out", fig / "teacher_samples"], [teacher],
               _figure(fig, "teacher_samples"), "teacher sample grids at 35, 15 and 10 NFE"),
        script("hkd-samples", ["--teacher", teacher, "--hkd", hkd, "--out", fig / "hkd_samples"], [teacher, hkd],
               _figure(fig, "hkd_samples"), "one-step HKD beside the teacher, same seeds"),
        script("spectrum", ["--hkd", hkd, "--name", p, "--count", seeds, "--figures", fig,
                            "--out", res / "spectrum_reading.json", *th], [hkd],
               [res / "spectrum_reading.json", *_figure(fig, f"spectrum_{p}"), *_figure(fig, "spectrum_reading"),
                *_figure(fig, f"modes_{p}_isolated"), *_figure(fig, f"modes_{p}_cumulative")],
               "the spectrum, per-band reconstructions (Figure 2) and the band reading"),
        command("consistency", ["consistency", hkd, "--count", seeds, "--out", res / f"consistency_{p}.nc",
                                "--plot", fig / f"consistency_{p}.png", *th, "--no-progress"], [hkd, teacher],
                [res / f"consistency_{p}.nc", res / f"consistency_{p}.json", *_figure(fig, f"consistency_{p}")],
                "do the latents follow the generators"),
        script("trajectory", ["--hkd", hkd, "--name", p, "--count", seeds, "--rows", rows, "--figures", fig,
                              "--out", res / "trajectory.json", *th], [hkd, teacher],
               [res / "trajectory.json", *_figure(fig, f"trajectory_{p}")], "HKD's trajectory beside the teacher's"),
        script("editing", ["--hkd", hkd, "--count", seeds, "--rows", rows, "--figures", fig,
                           "--out", res / "editing.json", *th], [hkd, teacher],
               [res / "editing.json", *_figure(fig, "editing"), *_figure(fig, "editing_locality")],
               "frequency-aware editing (Figure 3) and its locality"),
        script("inpainting", ["--hkd", hkd, "--count", seeds, "--rows", rows, "--figures", fig,
                              "--out", res / "inpainting.json", *th], [hkd, teacher],
               [res / "inpainting.json", *_figure(fig, "inpainting")], "inpainting against the teacher"),
    ]
    if n["fid"]:
        fid = ["--count", n["fid"], "--trajectories", store, *th, "--no-progress"]
        stages += [
            script("eval-teacher", ["--teacher", teacher, *fid, "--out", res / "eval_teacher.json"],
                   [teacher, store], [res / "eval_teacher.json"], "teacher FID/KID/P-R at 35, 15, 10 NFE"),
            script("eval-hkd", ["--hkd", hkd, *fid, "--teacher-from", res / "eval_teacher.json",
                                "--out", res / "eval_hkd.json"], [hkd, store, res / "eval_teacher.json"],
                   [res / "eval_hkd.json"], "one-step HKD FID/KID/P-R and trajectory fidelity"),
            script("comparison", ["--report", "--trajectories", store, "--teacher", teacher,
                                  "--results", COMPARISON, "--table", fig / "comparison.md",
                                  "--figure", fig / "comparison_curve"], [COMPARISON],
                   [fig / "comparison.md", *_figure(fig, "comparison_curve")],
                   "the one-teacher comparison table and curve (from analyses/comparison.py's runs)"),
        ]
    return stages
