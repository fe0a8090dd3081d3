"""`koopscope reproduce`: data -> teacher -> trajectories -> HKD -> every figure and table, resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import check_output, user_errors


@user_errors
def reproduce(
    preset: str = typer.Option("smoke", help="smoke (a few minutes here) | fashion (the README's figures; hours)."),
    out: Path = typer.Option(None, help="Folder for figures/, results/, runs/, logs/ (default: runs/reproduce-"
                                        "PRESET; fashion: the repository's figures/ and analyses/results/)."),
    runs: Path = typer.Option(None, help="Folder for training runs and the trajectory store (default: OUT/runs; "
                                         "fashion without --out: ~/koopscope-runs)."),
    only: list[str] = typer.Option(None, help="Run only this stage (repeatable, or comma-separated)."),
    list_: bool = typer.Option(False, "--list", help="List the stages and whether each is current; run nothing."),
    force: bool = typer.Option(False, help="Rerun the chosen stages even when current."),
    threads: int = typer.Option(1, help="CPU threads per stage."),
    progress: bool = typer.Option(True, help="Show the progress over the stages."),
):
    """Regenerate a preset's figures and tables, skipping stages whose outputs are current."""
    from ..errors import KoopscopeError
    from ..reproduce import Layout, plan, statuses
    from ..reproduce import reproduce as run

    if threads < 1:
        raise KoopscopeError("--threads must be at least 1")
    only = [n for item in only or [] for n in item.split(",") if n]
    lay = Layout.of(preset, out, runs)
    stages = plan(preset, lay, threads)
    if list_:
        for s in statuses(stages, lay):
            state = "current" if s.current else ("waiting" if s.key is None else "to run")
            print(f"{s.stage.name:16} {state:8} {s.stage.about}")
        return
    for folder in (lay.figures, lay.results, lay.runs, lay.logs):
        check_output(folder, "folder")
    for name, state, seconds in run(stages, lay, only, force, threads, progress):
        print(f"{name:16} {state:8} {f'{seconds:.0f} s' if state == 'ran' else ''}")
    print(f"figures in {lay.figures}, numbers in {lay.results}")
