"""One-step HKD sampling and closed-form latent trajectories (docs/method.md §6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..diffusion.samplers import seeded_noise
from .model import HKD


@torch.no_grad()
def one_step(model: HKD, seeds: Sequence[int], batch: int = 256) -> Tensor:
    """x_eps = D(exp((eps - T) A) E(T n)) for one noise per seed: NFE = 1 per image.

    Runs on the model's device and returns CPU float32. The eps-from-T propagator is precomputed
    once (a constant per level and location).
    """
    cfg = model.cfg
    shape = (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)
    factors = model.koopman.precompute(cfg.dt(cfg.sigma_max, cfg.sigma_min))
    seeds, out = list(seeds), []
    for i in range(0, len(seeds), batch):
        x_T = seeded_noise(seeds[i:i + batch], shape, _device(model)) * cfg.sigma_max
        zs = model.koopman.apply_precomputed(model.encode(x_T, cfg.sigma_max), factors)
        out.append(model.decode(zs, cfg.sigma_min).float().cpu())
    return torch.cat(out) if out else torch.empty(0, *shape)


@torch.no_grad()
def latent_trajectory(model: HKD, seeds: Sequence[int], sigmas: Sequence[float]):
    """Closed-form latents z_t = exp((tau(t) - tau(T)) A) z_T and their decodings at each sigma.

    Returns (latents: list over sigmas of per-level lists, states: (len(sigmas), B, C, H, W)).
    """
    cfg = model.cfg
    shape = (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)
    x_T = seeded_noise(list(seeds), shape, _device(model)) * cfg.sigma_max
    z_T = model.encode(x_T, cfg.sigma_max)
    latents, states = [], []
    for s in sigmas:
        zs = model.evolve(z_T, cfg.sigma_max, max(float(s), cfg.sigma_min))
        latents.append(zs)
        states.append(model.decode(zs, max(float(s), cfg.sigma_min)).float().cpu())
    return latents, torch.stack(states)


def _device(model: HKD) -> torch.device:
    return next(model.parameters()).device
