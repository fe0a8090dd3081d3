"""What the baselines share: the teacher's network as a starting point, and the store checks."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..errors import KoopscopeError
from ..io.meta import sha256


def teacher_start(teacher: str | Path, store) -> tuple[nn.Module, str]:
    """A trainable copy of the teacher's EMA denoiser, after checking the store was made by this teacher."""
    from ..diffusion.teacher import load_teacher

    net, _ = load_teacher(teacher)
    digest = sha256(teacher)
    if store.manifest["teacher_sha256"] != digest:
        raise KoopscopeError(f"trajectory store {store.path} was written by another teacher than {teacher}")
    shape = (net.backbone.cfg.img_channels, net.backbone.cfg.resolution, net.backbone.cfg.resolution)
    if tuple(store.image_shape) != shape:
        raise KoopscopeError(f"trajectory store holds images of shape {tuple(store.image_shape)}, "
                             f"the teacher's network expects {shape}")
    return copy.deepcopy(net).train().requires_grad_(True), digest


def trajectories(store, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """Whole stored trajectories (B, K, C, H, W) for random rows (K grid times, T first, sigma = 0 last)."""
    rows = torch.randint(len(store), (batch_size,), generator=gen)
    return torch.stack([store[int(i)] for i in rows])


def store_provenance(store, teacher: str | Path) -> dict:
    m = store.manifest
    return {"trajectories": str(store.path), "trajectory_count": len(store), "teacher": str(teacher),
            "teacher_sha256": m["teacher_sha256"], "grid_steps": m["steps"]}


def noises(seeds, shape: tuple[int, ...], draws: int) -> torch.Tensor:
    """(draws, N, *shape) float64: per seed one generator, draw 0 is the x_T noise of every koopscope
    sampler (``seeded_noise``), later draws re-noise multistep samplers."""
    out = torch.empty((draws, len(seeds), *shape), dtype=torch.float64)
    for k, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        for d in range(draws):
            out[d, k] = torch.randn(shape, generator=g, dtype=torch.float64)
    return out
