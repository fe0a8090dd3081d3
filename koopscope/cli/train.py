"""`koopscope train teacher|hkd|kd|cd`."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import check_output, user_errors

_RESUME_HELP = ("Continue the run in OUT exactly where it stopped (on another number of processes: the same global "
                "batch, optimizer and EMA, a new data order).")


def _rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _config(preset_cfg, threads: int, **overrides):
    """The preset's TrainConfig with the options given, checked before any work."""
    from dataclasses import replace

    from ..train.loop import check_config

    cfg = replace(preset_cfg, threads=threads, **{k: v for k, v in overrides.items() if v is not None})
    check_config(cfg)
    return cfg


def _train(build, cfg, out: Path, resume: bool, preset: str, progress: bool) -> Path:
    """Check OUT, build the task with torch seeded by the run's seed (a fresh run's weights follow from it), then
    train."""
    check_output(out, "folder")

    import torch

    from ..train.loop import check_run_folder, train

    check_run_folder(out, resume)
    torch.manual_seed(cfg.seed)
    return train(build(), cfg, out, resume=resume, preset=preset, progress=progress)


app = typer.Typer(no_args_is_help=True,
                  help="Train the EDM teacher, the HKD student, or the KD and CD baselines (torchrun-ready); average a "
                       "run's snapshots.")


@app.command("teacher")
@user_errors
def teacher(
    preset: str = typer.Option("smoke", help="smoke | fashion | cifar10 | ffhq64"),
    out: Path = typer.Option(..., help="Run folder (checkpoints, log.jsonl, options.json, samples)."),
    resume: bool = typer.Option(False, help=_RESUME_HELP),
    init: Path | None = typer.Option(None, help="Warm start from a trained teacher's weights (same network): "
                                                "continue training it with a fresh optimizer."),
    data_root: Path | None = typer.Option(None, help="Where the dataset files are (default: per dataset)."),
    steps: int | None = typer.Option(None, help="Override the preset's number of steps."),
    batch: int | None = typer.Option(None, help="Override the preset's global batch size."),
    lr: float | None = typer.Option(None, help="Override the preset's learning rate."),
    rampdown: int | None = typer.Option(None, help="Let the learning rate fall linearly to 0 over the run's last "
                                                   "RAMPDOWN steps (default 0: constant after the warm-up)."),
    threads: int = typer.Option(0, help="CPU threads per process (0 = torch default)."),
    seed: int | None = typer.Option(None, help="Override the preset's seed."),
    grid: int | None = typer.Option(None, help="Images per sample grid (0 = no grids)."),
    amp: str | None = typer.Option(None, help="none | bf16: autocast the loss to bfloat16 (GPU, or a CPU with "
                                              "AVX512-BF16/AMX; default: the preset's)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Train an EDM teacher on a preset's dataset."""
    from ..pipeline import teacher_task
    from ..train.presets import teacher_preset

    cfg = _config(teacher_preset(preset).train, threads, steps=steps, batch=batch, seed=seed, grid=grid, amp=amp,
                  lr=lr, rampdown=rampdown)
    path = _train(lambda: teacher_task(preset, data_root, init)[0], cfg, out, resume, preset, progress)
    if _rank0():
        print(f"teacher: {path}")


@app.command("hkd")
@user_errors
def hkd(
    trajectories: Path = typer.Option(..., help="Trajectory store from `koopscope trajectories`."),
    teacher: Path | None = typer.Option(None, help="Teacher checkpoint to initialise encoder/decoder from "
                                           "(the paper's default; omit to start from scratch)."),
    preset: str = typer.Option("smoke", help="smoke | fashion | cifar10 | ffhq64"),
    init: Path | None = typer.Option(None, help="Warm start from a trained HKD model's weights (same network), "
                                                "e.g. to fine-tune it with another objective, or to carry it "
                                                "over to its teacher trained further."),
    out: Path = typer.Option(..., help="Run folder."),
    resume: bool = typer.Option(False, help=_RESUME_HELP),
    encoder_conditioning: str | None = typer.Option(None, help="Encoder sees the noise level ('sigma') or not "
                                                               "('blind')."),
    intermediate: float | None = typer.Option(None, help="Weight of intermediate-state supervision (0 = off)."),
    latent: float | None = typer.Option(None, help="Weight of latent consistency: the encoder's latents of the "
                                                   "teacher's states must follow the generators (0 = off)."),
    noise_estimate: str | None = typer.Option(None, help="Blind encoder's noise-level estimate: haar | energy."),
    distance: str | None = typer.Option(None, help="mse | huber (no LPIPS: its ImageNet weights cannot be had "
                                                   "offline)."),
    points: int | None = typer.Option(None, help="Time points per trajectory (T plus s-1 grid times)."),
    koopman: bool = typer.Option(True, help="Koopman evolution (off: identity, an ablation)."),
    hierarchy: bool = typer.Option(True, help="All levels evolve (off: only the bottleneck, an ablation)."),
    consistency: bool = typer.Option(True, help="Trajectory consistency (off: only x_T -> x_eps, an ablation)."),
    steps: int | None = typer.Option(None, help="Override the preset's number of steps."),
    batch: int | None = typer.Option(None, help="Override the preset's global batch size."),
    lr: float | None = typer.Option(None, help="Override the preset's learning rate."),
    rampdown: int | None = typer.Option(None, help="Let the learning rate fall linearly to 0 over the run's last "
                                                   "RAMPDOWN steps (default 0: constant after the warm-up)."),
    grid: int | None = typer.Option(None, help="Images per sample grid (0 = no grids)."),
    threads: int = typer.Option(0, help="CPU threads per process (0 = torch default)."),
    seed: int | None = typer.Option(None, help="Override the preset's seed."),
    amp: str | None = typer.Option(None, help="none | bf16: autocast the loss to bfloat16 (GPU, or a CPU with "
                                              "AVX512-BF16/AMX; default: the preset's)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Distil a teacher's trajectories into a Hierarchical Koopman Diffusion model."""
    from ..errors import KoopscopeError
    from ..pipeline import hkd_task
    from ..train.presets import hkd_preset

    cfg = _config(hkd_preset(preset).train, threads, steps=steps, batch=batch, seed=seed, grid=grid, lr=lr,
                  amp=amp, rampdown=rampdown)
    if points is not None and points < 1:
        raise KoopscopeError(f"--points must be at least 1, got {points}")
    for name, weight in (("--intermediate", intermediate), ("--latent", latent)):
        if weight is not None and not 0 <= weight < float("inf"):
            raise KoopscopeError(f"{name} must be a non-negative number, got {weight}")

    def build():
        return hkd_task(preset, trajectories, teacher, encoder_conditioning=encoder_conditioning,
                        intermediate=intermediate, distance=distance, points=points, koopman=koopman,
                        hierarchy=hierarchy, consistency=consistency, latent=latent,
                        noise_estimate=noise_estimate, init=init)[0]

    path = _train(build, cfg, out, resume, preset, progress)
    if _rank0():
        print(f"hkd: {path}")


def _distill(method: str, trajectories: Path, teacher: Path, preset: str, out: Path, resume: bool,
             distance: str | None, steps: int | None, batch: int | None, lr: float | None, grid: int | None,
             threads: int, seed: int | None, progress: bool) -> None:
    from ..pipeline import distill_task
    from ..train.presets import hkd_preset

    cfg = _config(hkd_preset(preset).train, threads, steps=steps, batch=batch, seed=seed, grid=grid, lr=lr)
    path = _train(lambda: distill_task(method, preset, trajectories, teacher, distance)[0], cfg, out, resume, preset,
                  progress)
    if _rank0():
        print(f"{method}: {path}")


def _distill_command(method: str, distance_help: str, doc: str):
    """The `koopscope train kd|cd` command: the same options for both baselines."""

    @user_errors
    def command(
        trajectories: Path = typer.Option(..., help="Trajectory store of TEACHER from `koopscope trajectories`."),
        teacher: Path = typer.Option(..., help="The teacher checkpoint the store was written with (the student "
                                               "starts from it)."),
        preset: str = typer.Option("smoke", help="smoke | fashion | cifar10 | ffhq64 (the HKD preset's training "
                                                 "budget)."),
        out: Path = typer.Option(..., help="Run folder."),
        resume: bool = typer.Option(False, help=_RESUME_HELP),
        distance: str | None = typer.Option(None, help=distance_help),
        steps: int | None = typer.Option(None, help="Override the preset's number of steps."),
        batch: int | None = typer.Option(None, help="Override the preset's global batch size."),
        lr: float | None = typer.Option(None, help="Override the preset's learning rate."),
        grid: int | None = typer.Option(None, help="Images per sample grid (0 = no grids)."),
        threads: int = typer.Option(0, help="CPU threads per process (0 = torch default)."),
        seed: int | None = typer.Option(None, help="Override the preset's seed."),
        progress: bool = typer.Option(True, help="Show a progress bar."),
    ):
        _distill(method, trajectories, teacher, preset, out, resume, distance, steps, batch, lr, grid, threads, seed,
                 progress)

    command.__doc__ = doc
    return command


app.command("kd")(_distill_command(
    "kd", "mse (default) | huber.",
    "Knowledge distillation baseline (Luhman & Luhman 2021): x_T -> the teacher's sample in one step."))
app.command("cd")(_distill_command(
    "cd", "huber (default) | mse.",
    "Consistency distillation baseline (Song et al. 2023) on adjacent grid times of the stored trajectories; "
    "sample with `koopscope sample --steps 1|2|3`."))


@app.command("average")
@user_errors
def average(
    snapshots: list[Path] = typer.Argument(..., help="Two or more snapshots of one run (model-stepN.safetensors)."),
    out: Path = typer.Option(..., help="The averaged checkpoint (.safetensors)."),
):
    """Average snapshots' EMA weights into one checkpoint: a longer EMA chosen after training (post-hoc)."""
    from ..errors import KoopscopeError

    if out.suffix != ".safetensors":
        raise KoopscopeError(f"--out '{out}': give a .safetensors file")
    check_output(out, "file")
    from ..train.average import average_checkpoints

    print(f"averaged {len(snapshots)} snapshots: {average_checkpoints(snapshots, out)}")
