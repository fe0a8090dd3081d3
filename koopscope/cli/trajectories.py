"""`koopscope trajectories`: teacher PF-ODE trajectories into a store (resumable, torchrun-ready)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import Solver, check_output, user_errors


@user_errors
def trajectories(
    teacher: Annotated[Path, typer.Argument(help="Teacher checkpoint (model.safetensors).")],
    out: Annotated[Path, typer.Option(help="Store folder; re-run the same command to resume it, or with a "
                                           "larger --count to grow it.")],
    count: Annotated[int, typer.Option(help="Number of trajectories (seeds SEED_OFFSET + [0, COUNT)).")],
    steps: Annotated[int | None, typer.Option(help="Grid points N (default: the checkpoint's).")] = None,
    solver: Annotated[Solver, typer.Option(help="PF-ODE solver.")] = Solver.heun,
    batch: Annotated[int, typer.Option(help="Trajectories integrated at once per process.")] = 64,
    shard_size: Annotated[int | None, typer.Option(help="Trajectories per shard, the most a kill loses "
                                                        "(default 256, fewer if over 256 MiB).")] = None,
    seed_offset: Annotated[int, typer.Option(help="First seed.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    threads: Annotated[int, typer.Option(help="CPU threads per process (0 = torch default).")] = 0,
):
    """Integrate the teacher's probability-flow ODE and store the state at every grid time."""
    import os

    check_output(out, "folder")

    import torch

    from ..trajectories import generate

    if threads:
        torch.set_num_threads(threads)
    r = generate(teacher, out, count, steps=steps, solver=solver.value, batch=batch, shard_size=shard_size,
                 seed_offset=seed_offset, progress=progress)
    if os.environ.get("RANK", "0") == "0":
        print(f"trajectories: {r.path} holds {r.total}/{r.requested} ({r.existing} already there, "
              f"{r.generated} generated)")
