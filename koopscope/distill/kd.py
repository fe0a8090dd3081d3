"""Knowledge distillation (Luhman & Luhman 2021): a denoiser evaluated once at sigma_max maps x_T to
the teacher's sample.

The student is the teacher's preconditioned network D(x, sigma) (same U-Net, initialised from the
teacher's EMA weights) used at sigma = T only; the loss is d(D(x_T, T), x_0) against the final state
of the stored Heun trajectory that starts at x_T.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..diffusion.config import SIGMA_MAX
from ..hkd.loss import distance
from ..io.images import save_grid
from .common import noises, store_provenance, teacher_start, trajectories

KIND = "kd"


class KDTask:
    """x_T -> teacher's x_0 regression on a trajectory store (see koopscope.train.loop.Task)."""

    kind = KIND

    def __init__(self, teacher: str | Path, store, distance: str = "mse"):
        self.net, _ = teacher_start(teacher, store)
        self.teacher, self.store, self.distance = str(teacher), store, distance
        self.sigma_max = float(store.sigmas[0])

    def wrap(self, net: nn.Module) -> nn.Module:
        return net

    def loss(self, net: nn.Module, batch_size: int, gen: torch.Generator, device):
        traj = trajectories(self.store, batch_size, gen).to(device)
        pred = net(traj[:, 0], self.sigma_max)
        return distance(self.distance, pred, traj[:, -1]).mean(), {}

    def config(self) -> dict:
        cfg = self.net.backbone.cfg
        return {"unet": cfg.to_dict(), "sigma_max": self.sigma_max, "distance": self.distance,
                "image_shape": [cfg.img_channels, cfg.resolution, cfg.resolution], "teacher": self.teacher}

    def data_provenance(self) -> dict:
        return store_provenance(self.store, self.teacher)

    def save_samples(self, net: nn.Module, path: Path, count: int) -> None:
        save_grid(sample(net, range(count), self.sigma_max), path)


@torch.no_grad()
def sample(net: nn.Module, seeds: Sequence[int], sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """One call per image: D(sigma_max n, sigma_max); CPU float32 in [-1, 1]."""
    cfg = net.backbone.cfg
    x = noises(list(seeds), (cfg.img_channels, cfg.resolution, cfg.resolution), 1)[0] * sigma_max
    device = next(net.parameters()).device
    return net(x.to(device), sigma_max).float().cpu().clamp(-1, 1)
