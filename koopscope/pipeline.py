"""The whole chain in one call: teacher -> trajectories -> HKD -> samples.

Every stage is resumable, so re-running the same call continues where it stopped.
`koopscope demo` runs it on the `smoke` preset in about a minute.
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


def run_chain(out: str | Path, preset: str = "smoke", count: int = 256, threads: int = 0,
              data_root: str | Path | None = None, progress: bool = True) -> ChainResult:
    from .data import load_dataset
    from .diffusion.teacher import TeacherTask
    from .hkd.loss import HKDLossConfig
    from .hkd.model import HKDConfig
    from .hkd.task import HKDTask
    from .io.images import save_grid
    from .sampling import sample_checkpoint
    from .train.loop import train
    from .train.presets import hkd_preset, teacher_preset
    from .trajectories import TrajectoryStore, generate

    out = Path(out)
    tp, hp = teacher_preset(preset), hkd_preset(preset)

    teacher = out / "teacher" / "model.safetensors"
    if not _finished(out / "teacher", tp.train.steps):
        data = load_dataset(tp.dataset, root=data_root, size=tp.resolution, flip=tp.flip, limit=tp.data_limit)
        train(TeacherTask(tp.unet, data, tp.sampler_steps), replace(tp.train, threads=threads), out / "teacher",
              resume=(out / "teacher" / "checkpoint.safetensors").exists(), preset=preset, progress=progress)

    store = out / "trajectories"
    generate(teacher, store, count, progress=progress)

    hkd = out / "hkd" / "model.safetensors"
    if not _finished(out / "hkd", hp.train.steps):
        cfg = HKDConfig(tp.unet, time=hp.time, encoder_time=hp.encoder_time)
        loss = HKDLossConfig(distance=hp.distance, intermediate=hp.intermediate)
        task = HKDTask(cfg, loss, TrajectoryStore(store), hp.times, teacher=str(teacher))
        train(task, replace(hp.train, threads=threads), out / "hkd",
              resume=(out / "hkd" / "checkpoint.safetensors").exists(), preset=preset, progress=progress)

    samples = out / "hkd_samples.png"
    save_grid(sample_checkpoint(hkd, range(64))[0], samples)
    return ChainResult(teacher, store, hkd, samples)


def _finished(run: Path, steps: int) -> bool:
    from .io.checkpoint import read_meta

    ckpt = run / "checkpoint.safetensors"
    return ckpt.exists() and read_meta(ckpt)["state"]["step"] >= steps
