"""The whole chain in one call: teacher -> trajectories -> HKD -> samples.

Every stage is resumable, so re-running the same call continues where it stopped.
`koopscope demo` runs it on the `smoke` preset in about a minute. `teacher_task` and `hkd_task`
build the training tasks from a preset for both this chain and `koopscope train`.
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


def teacher_task(preset: str, data_root: str | Path | None = None):
    """(TeacherTask, TrainConfig) for a teacher preset, its dataset loaded."""
    from .data import load_dataset
    from .diffusion.teacher import TeacherTask
    from .train.presets import teacher_preset

    p = teacher_preset(preset)
    data = load_dataset(p.dataset, root=data_root, size=p.resolution, flip=p.flip, limit=p.data_limit)
    return TeacherTask(p.unet, data, p.sampler_steps), p.train


def hkd_task(preset: str, trajectories: str | Path, teacher: str | Path | None = None,
             encoder_time: str | None = None, intermediate: float | None = None, distance: str | None = None,
             times: int | None = None, koopman: bool = True, hierarchy: bool = True, consistency: bool = True,
             latent: float | None = None, noise_estimate: str | None = None, init: str | Path | None = None):
    """(HKDTask, TrainConfig) for an HKD preset; unset choices come from the preset.

    With a teacher the student reuses the teacher's U-Net (whatever preset trained it) and its weights.
    """
    from .diffusion.teacher import KIND
    from .diffusion.unet import UNetConfig
    from .errors import CheckpointError, KoopscopeError
    from .hkd.config import NOISE_ESTIMATES
    from .hkd.loss import DISTANCES, HKDLossConfig
    from .hkd.model import ENCODER_TIMES, HKDConfig
    from .hkd.task import HKDTask
    from .io.checkpoint import read_meta
    from .train.presets import hkd_preset, teacher_preset
    from .trajectories import TrajectoryStore

    p = hkd_preset(preset)
    encoder_time, distance = encoder_time or p.encoder_time, distance or p.distance
    noise_estimate = noise_estimate or p.noise_estimate
    if noise_estimate not in NOISE_ESTIMATES:
        raise KoopscopeError(f"--noise-estimate must be one of: {', '.join(NOISE_ESTIMATES)}")
    if encoder_time not in ENCODER_TIMES:
        raise KoopscopeError(f"--encoder-time must be one of: {', '.join(ENCODER_TIMES)}")
    if distance not in DISTANCES:
        raise KoopscopeError(f"--distance must be one of: {', '.join(DISTANCES)}")
    unet = teacher_preset(p.teacher).unet
    if teacher is not None:
        meta = read_meta(teacher)
        if meta["kind"] != KIND:
            raise CheckpointError(f"--teacher {teacher} is a '{meta['kind']}' checkpoint; HKD is initialised "
                                  "from a teacher checkpoint (`koopscope train teacher`)")
        unet = UNetConfig.from_dict(meta["config"]["unet"])
    model = HKDConfig(unet, time=p.time, encoder_time=encoder_time, noise_estimate=noise_estimate,
                      koopman=koopman, hierarchy=hierarchy)
    loss = HKDLossConfig(distance=distance, consistency=consistency,
                         intermediate=p.intermediate if intermediate is None else intermediate,
                         latent=p.latent if latent is None else latent)
    task = HKDTask(model, loss, TrajectoryStore(trajectories), times or p.times,
                   teacher=None if teacher is None else str(teacher), init=None if init is None else str(init))
    return task, p.train


def run_chain(out: str | Path, preset: str = "smoke", count: int = 256, threads: int = 0,
              data_root: str | Path | None = None, progress: bool = True) -> ChainResult:
    import torch

    from .io.images import save_grid
    from .sampling import sample_checkpoint
    from .train.loop import train
    from .train.presets import hkd_preset, teacher_preset
    from .trajectories import generate

    out = Path(out)
    teacher = out / "teacher" / "model.safetensors"
    if not _finished(out / "teacher", preset, "teacher"):
        torch.manual_seed(teacher_preset(preset).train.seed)  # a fresh network's weights follow from the seed
        task, cfg = teacher_task(preset, data_root)
        train(task, replace(cfg, threads=threads), out / "teacher",
              resume=(out / "teacher" / "checkpoint.safetensors").exists(), preset=preset, progress=progress)

    store = out / "trajectories"
    generate(teacher, store, count, progress=progress)

    hkd = out / "hkd" / "model.safetensors"
    if not _finished(out / "hkd", preset, "hkd"):
        torch.manual_seed(hkd_preset(preset).train.seed)
        task, cfg = hkd_task(preset, store, teacher)
        train(task, replace(cfg, threads=threads), out / "hkd",
              resume=(out / "hkd" / "checkpoint.safetensors").exists(), preset=preset, progress=progress)

    samples = out / "hkd_samples.png"
    save_grid(sample_checkpoint(hkd, range(64))[0], samples)
    return ChainResult(teacher, store, hkd, samples)


def _finished(run: Path, preset: str, kind: str) -> bool:
    from .io.checkpoint import read_meta
    from .train.presets import hkd_preset, teacher_preset

    steps = (teacher_preset if kind == "teacher" else hkd_preset)(preset).train.steps
    ckpt = run / "checkpoint.safetensors"
    return ckpt.exists() and read_meta(ckpt)["state"]["step"] >= steps
