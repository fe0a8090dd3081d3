"""`koopscope train teacher|hkd`."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import user_errors

app = typer.Typer(no_args_is_help=True, help="Train the EDM teacher or the HKD student (torchrun-ready).")


@app.command("teacher")
@user_errors
def teacher(
    preset: str = typer.Option("smoke", help="smoke | fashion | cifar10 | ffhq64"),
    out: Path = typer.Option(..., help="Run folder (checkpoints, log.jsonl, options.json, samples)."),
    resume: bool = typer.Option(False, help="Continue the run in OUT exactly where it stopped."),
    data_root: Path | None = typer.Option(None, help="Where the dataset files are (default: per dataset)."),
    steps: int | None = typer.Option(None, help="Override the preset's number of steps."),
    batch: int | None = typer.Option(None, help="Override the preset's global batch size."),
    threads: int = typer.Option(0, help="CPU threads per process (0 = torch default)."),
    seed: int | None = typer.Option(None, help="Override the preset's seed."),
    grid: int | None = typer.Option(None, help="Images per sample grid (0 = no grids)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Train an EDM teacher on a preset's dataset."""
    from dataclasses import replace

    from ..data import load_dataset
    from ..diffusion.teacher import TeacherTask
    from ..train.loop import train
    from ..train.presets import teacher_preset

    p = teacher_preset(preset)
    overrides = {k: v for k, v in {"steps": steps, "batch": batch, "seed": seed, "grid": grid}.items() if v is not None}
    cfg = replace(p.train, threads=threads, **overrides)
    data = load_dataset(p.dataset, root=data_root, size=p.resolution, flip=p.flip, limit=p.data_limit)
    task = TeacherTask(p.unet, data, p.sampler_steps)
    path = train(task, cfg, out, resume=resume, preset=preset, progress=progress)
    print(f"teacher: {path}")
