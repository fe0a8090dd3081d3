"""Consistency distillation (Song et al. 2023) on the stored teacher trajectories.

f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)) with the boundary
scalings c_skip = sd^2 / ((sigma - eps)^2 + sd^2), c_out = (sigma - eps) sd / sqrt(sigma^2 + sd^2), so
f(x, eps) = x exactly. F is the teacher's U-Net, initialised from its EMA weights.

Training pairs are adjacent grid times of one stored trajectory: the store was written by the
teacher's Heun solver on the same grid, so x_{n+1} is exactly one teacher Heun step from x_n. The grid
ends at eps, where f is the identity; the store's last step to sigma = 0 is not used. Loss:
lambda_n d(f(x_n, sigma_n), sg f(x_{n+1}, sigma_{n+1})) with lambda_n = 1 / (sigma_n - sigma_{n+1}) and
the target the stop-gradient online network (iCT, Song & Dhariwal 2023: no separate target EMA, so
nothing beyond the loop's state to resume).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..diffusion.config import SIGMA_DATA, SIGMA_MAX, SIGMA_MIN
from ..diffusion.precond import c_in, c_noise
from ..diffusion.unet import UNet, UNetConfig
from ..hkd.loss import distance
from ..io.images import save_grid
from .common import noises, store_provenance, teacher_start, trajectories

KIND = "cd"
# re-noising levels of multistep sampling: 0.821 is Song et al.'s two-step choice on CIFAR-10; 0.2 adds a third
MULTISTEP_SIGMAS = (0.821, 0.2)


class ConsistencyModel(nn.Module):
    """f(x, sigma) around a U-Net backbone; runs the backbone in float32, returns x's dtype."""

    def __init__(self, backbone: UNet, sigma_min: float = SIGMA_MIN, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.backbone, self.sigma_min, self.sigma_data = backbone, sigma_min, sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1).expand(x.shape[0])
        s, sd, eps = sigma.reshape(-1, 1, 1, 1), self.sigma_data, self.sigma_min
        c_skip = sd**2 / ((s - eps) ** 2 + sd**2)
        c_out = (s - eps) * sd / (s**2 + sd**2).sqrt()
        f = self.backbone((c_in(s, sd) * x).float(), c_noise(sigma).float())
        return (c_skip * x + c_out * f.to(torch.float64)).to(x.dtype)


def build(unet: UNetConfig, sigma_min: float = SIGMA_MIN) -> ConsistencyModel:
    return ConsistencyModel(UNet(unet), sigma_min)


class CDTask:
    """Consistency distillation on a trajectory store (see koopscope.train.loop.Task)."""

    kind = KIND

    def __init__(self, teacher: str | Path, store, distance: str = "huber"):
        start, _ = teacher_start(teacher, store)
        self.sigmas = store.sigmas[:-1]  # T ... eps; the final step to sigma = 0 is not a CD pair
        self.net = ConsistencyModel(start.backbone, float(self.sigmas[-1]))
        self.teacher, self.store, self.distance = str(teacher), store, distance

    def wrap(self, net: nn.Module) -> nn.Module:
        return net

    def loss(self, net: nn.Module, batch_size: int, gen: torch.Generator, device):
        traj = trajectories(self.store, batch_size, gen)
        n = torch.randint(len(self.sigmas) - 1, (batch_size,), generator=gen)
        rows = torch.arange(batch_size)
        s_hi, s_lo = self.sigmas[n].to(device), self.sigmas[n + 1].to(device)
        online = net(traj[rows, n].to(device), s_hi)
        with torch.no_grad():
            target = net(traj[rows, n + 1].to(device), s_lo)
        weight = 1 / (s_hi - s_lo)
        return (weight * distance(self.distance, online, target)).mean(), {}

    def config(self) -> dict:
        cfg = self.net.backbone.cfg
        return {"unet": cfg.to_dict(), "sigma_min": self.net.sigma_min, "sigma_max": float(self.sigmas[0]),
                "distance": self.distance, "image_shape": [cfg.img_channels, cfg.resolution, cfg.resolution],
                "teacher": self.teacher}

    def data_provenance(self) -> dict:
        return store_provenance(self.store, self.teacher)

    def save_samples(self, net: nn.Module, path: Path, count: int) -> None:
        save_grid(sample(net, range(count), float(self.sigmas[0])), path)


@torch.no_grad()
def sample(net: ConsistencyModel, seeds: Sequence[int], sigma_max: float = SIGMA_MAX,
           sigmas: Sequence[float] = ()) -> torch.Tensor:
    """Multistep consistency sampling: x = f(T n, T), then for each s in ``sigmas`` re-noise to s and
    apply f again. NFE = 1 + len(sigmas); CPU float32 in [-1, 1]."""
    cfg = net.backbone.cfg
    z = noises(list(seeds), (cfg.img_channels, cfg.resolution, cfg.resolution), 1 + len(sigmas))
    device = next(net.parameters()).device
    x = net(z[0].to(device) * sigma_max, sigma_max)
    for k, s in enumerate(sigmas, start=1):
        x = net(x + (s**2 - net.sigma_min**2) ** 0.5 * z[k].to(device), s)
    return x.float().cpu().clamp(-1, 1)
