"""`koopscope demo`: the whole chain on the smoke preset, then the spectrum of the result."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import check_output, user_errors


@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for every stage (re-run to resume)."),
    preset: str = typer.Option("smoke", help="smoke (about a minute here) | fashion (hours)."),
    count: int = typer.Option(256, help="Teacher trajectories to distil."),
    threads: int = typer.Option(0, help="CPU threads (0 = torch default)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
):
    """Train a teacher, record its trajectories, distil HKD and sample it in one step."""
    from ..errors import KoopscopeError
    from ..pipeline import run_chain

    if count <= 0:
        raise KoopscopeError("--count must be positive")
    if threads < 0:
        raise KoopscopeError("--threads must be at least 0")
    check_output(out, "folder")
    r = run_chain(out, preset=preset, count=count, threads=threads, progress=progress)
    print(f"teacher       {r.teacher}\ntrajectories  {r.trajectories}\nhkd           {r.hkd}\n"
          f"samples       {r.samples}")
