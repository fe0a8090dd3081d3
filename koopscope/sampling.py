"""Samples from any koopscope checkpoint: teacher (Heun/Euler, any NFE) or HKD (one step)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .errors import KoopscopeError
from .io.checkpoint import read_meta


def sample_checkpoint(path: str | Path, seeds: Sequence[int], steps: int | None = None, solver: str = "heun",
                      batch: int = 256, progress: bool = False) -> tuple[torch.Tensor, int]:
    """Images in [-1, 1] (N, C, H, W) float32, one per seed, and the NFE per image."""
    kind = read_meta(path)["kind"]
    seeds = list(seeds)
    chunks = [seeds[i:i + batch] for i in range(0, len(seeds), batch)]
    out, nfe = [], 0
    if kind == "teacher":
        from .diffusion.samplers import SAMPLERS, sample
        from .diffusion.teacher import load_teacher

        if solver not in SAMPLERS:
            raise KoopscopeError(f"unknown solver '{solver}'; choose one of: {', '.join(SAMPLERS)}")
        net, meta = load_teacher(path)
        shape = tuple(meta["config"]["image_shape"])
        steps = steps or meta["config"]["sampler_steps"]
        for chunk in _progress(chunks, progress, f"{solver} {steps} steps"):
            x, nfe = sample(net, chunk, shape, steps=steps, solver=solver)
            out.append(x.float())
    elif kind == "hkd":
        from .hkd.sample import one_step
        from .hkd.task import load_hkd

        model, _ = load_hkd(path)
        for chunk in _progress(chunks, progress, "HKD one step"):
            out.append(one_step(model, chunk, batch=batch))
        nfe = 1
    else:
        raise KoopscopeError(f"{path} is a '{kind}' checkpoint; sampling needs a teacher or HKD checkpoint")
    return torch.cat(out).clamp(-1, 1), nfe


def _progress(chunks, enabled: bool, label: str):
    if not enabled:
        yield from chunks
        return
    from rich.progress import track

    yield from track(chunks, description=f"sampling ({label})")
