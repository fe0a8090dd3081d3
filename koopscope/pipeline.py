"""The whole chain in one call: teacher -> trajectories -> HKD -> samples.

Every stage is resumable, so re-running the same call continues where it stopped.
`koopscope demo` runs it on the `smoke` preset in about a minute. `teacher_task`, `hkd_task` and
`distill_task` build the training tasks from a preset for both this chain and `koopscope train`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path


@dataclass
class ChainResult:
    teacher: Path
    trajectories: Path
    hkd: Path
    samples: Path


def teacher_task(preset: str, data_root: str | Path | None = None, init: str | Path | None = None):
    """(TeacherTask, TrainConfig) for a teacher preset, its dataset loaded (``init``: warm start weights)."""
    from .data import load_dataset
    from .diffusion.teacher import TeacherTask
    from .train.presets import teacher_preset

    p = teacher_preset(preset)
    data = load_dataset(p.dataset, root=data_root, size=p.resolution, flip=p.flip, limit=p.data_limit)
    return TeacherTask(p.unet, data, p.sampler_steps, init), p.train


def hkd_task(preset: str, trajectories: str | Path, teacher: str | Path | None = None,
             encoder_conditioning: str | None = None, intermediate: float | None = None,
             distance: str | None = None, points: int | None = None, koopman: bool = True, hierarchy: bool = True,
             consistency: bool = True, latent: float | None = None, noise_estimate: str | None = None,
             init: str | Path | None = None):
    """(HKDTask, TrainConfig) for an HKD preset; unset choices come from the preset.

    With a teacher the student reuses the teacher's U-Net (whatever preset trained it) and its weights.
    """
    from .diffusion.teacher import KIND
    from .diffusion.unet import UNetConfig
    from .errors import KoopscopeError
    from .hkd.config import ENCODER_CONDITIONINGS, NOISE_ESTIMATES, HKDConfig
    from .hkd.loss import DISTANCES, HKDLossConfig
    from .hkd.task import HKDTask
    from .io.meta import read_meta, require_config, require_kind
    from .train.presets import hkd_preset, teacher_preset
    from .trajectories import TrajectoryStore

    p = hkd_preset(preset)
    conditioning, distance = encoder_conditioning or p.encoder_conditioning, distance or p.distance
    noise_estimate = noise_estimate or p.noise_estimate
    if noise_estimate not in NOISE_ESTIMATES:
        raise KoopscopeError(f"--noise-estimate must be one of: {', '.join(NOISE_ESTIMATES)}")
    if conditioning not in ENCODER_CONDITIONINGS:
        raise KoopscopeError(f"--encoder-conditioning must be one of: {', '.join(ENCODER_CONDITIONINGS)}")
    if distance not in DISTANCES:
        raise KoopscopeError(f"--distance must be one of: {', '.join(DISTANCES)}")
    unet = teacher_preset(p.teacher).unet
    if teacher is not None:
        meta = read_meta(teacher)
        require_kind(meta, teacher, KIND)
        require_config(meta, teacher, "unet")
        unet = UNetConfig.from_dict(meta["config"]["unet"])
    model = HKDConfig(unet, time_axis=p.time_axis, encoder_conditioning=conditioning, noise_estimate=noise_estimate,
                      koopman=koopman, hierarchy=hierarchy)
    loss = HKDLossConfig(distance=distance, consistency=consistency,
                         intermediate=p.intermediate if intermediate is None else intermediate,
                         latent=p.latent if latent is None else latent)
    task = HKDTask(model, loss, TrajectoryStore(trajectories).require_complete(), points or p.points,
                   teacher=None if teacher is None else str(teacher), init=None if init is None else str(init))
    return task, p.train


def distill_task(method: str, preset: str, trajectories: str | Path, teacher: str | Path,
                 distance: str | None = None):
    """(KDTask | CDTask, TrainConfig) for a one-step baseline, on the HKD preset's training budget (same steps,
    batch and schedule, so the methods compare at equal cost). Default distance: MSE for KD (as HKD),
    pseudo-Huber for CD (iCT)."""
    from .distill import cd, kd
    from .errors import KoopscopeError
    from .hkd.loss import DISTANCES
    from .train.presets import hkd_preset
    from .trajectories import TrajectoryStore

    tasks = {"kd": (kd.KDTask, "mse"), "cd": (cd.CDTask, "huber")}
    if method not in tasks:
        raise KoopscopeError(f"unknown method '{method}'; choose one of: {', '.join(tasks)}")
    task, default = tasks[method]
    if (distance or default) not in DISTANCES:
        raise KoopscopeError(f"--distance must be one of: {', '.join(DISTANCES)}")
    cfg = hkd_preset(preset).train
    return task(teacher, TrajectoryStore(trajectories).require_complete(), distance or default), cfg


def run_chain(out: str | Path, preset: str = "smoke", count: int = 256, threads: int = 0,
              data_root: str | Path | None = None, progress: bool = True) -> ChainResult:
    import torch

    from .generators import load_generator
    from .io.images import save_grid
    from .train.loop import train
    from .train.presets import hkd_preset, teacher_preset
    from .trajectories import generate

    out = Path(out)
    teacher = out / "teacher" / "model.safetensors"
    if not _finished(out / "teacher", preset, "teacher"):
        torch.manual_seed(teacher_preset(preset).train.seed)  # a fresh network's weights follow from the seed
        task, cfg = teacher_task(preset, data_root)
        train(task, replace(cfg, threads=threads), out / "teacher", resume=resumable(out / "teacher"),
              preset=preset, progress=progress)

    store = out / "trajectories"
    generate(teacher, store, count, progress=progress)

    hkd = out / "hkd" / "model.safetensors"
    if not _finished(out / "hkd", preset, "hkd"):
        torch.manual_seed(hkd_preset(preset).train.seed)
        task, cfg = hkd_task(preset, store, teacher)
        train(task, replace(cfg, threads=threads), out / "hkd", resume=resumable(out / "hkd"), preset=preset,
              progress=progress)

    samples = out / "hkd_samples.png"
    save_grid(load_generator(hkd)(range(64)), samples)
    return ChainResult(teacher, store, hkd, samples)


def _finished(run: Path, preset: str, kind: str) -> bool:
    """Whether checkpoint and model both reached the preset's steps (resuming repairs a model a kill left behind)."""
    from .io.checkpoint import read_meta
    from .train.presets import hkd_preset, teacher_preset

    steps = (teacher_preset if kind == "teacher" else hkd_preset)(preset).train.steps
    files = [run / "checkpoint.safetensors", run / "model.safetensors"]
    return all(f.exists() for f in files) and all(read_meta(f)["state"]["step"] >= steps for f in files)


def resumable(run: Path) -> bool:
    """Whether the stage has a checkpoint to resume; if not, a killed start's files go (nothing to continue)."""
    if (run / "checkpoint.safetensors").exists():
        return True
    for name in ("options.json", "log.jsonl"):
        (run / name).unlink(missing_ok=True)
    return False
