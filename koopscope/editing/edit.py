"""Frequency-aware editing by mixing Koopman latents at one time of the trajectory (docs/method.md §8).

At the edit time t (default: the midpoint of the model's own time, sigma = sqrt(T eps) for tau = ln sigma)

    z'_t = z_gen + r * M_region * M_band * (z_ref - z_gen)      per level (or the chosen levels)

is propagated to eps in closed form and decoded once. M_band keeps the chosen bands' eigen-coordinates:
in the block basis of the generators (``spectral.modes.BlockBasis``) it is a 0/1 mask on channel pairs,
so the whole mix is one per-coordinate ``lerp`` with weight r * M (exact at r = 0 and r = 1).
M_region is the image mask resampled to each level by area averaging. Since exp(dtau A) is linear,
z'_eps = z_gen,eps + exp((tau(eps) - tau(t)) A)(z'_t - z_gen,t): an edit of ratio 0 is the one-step
sample bit for bit, and, the generators acting per pixel, latents outside the region never change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..diffusion.samplers import seeded_noise
from ..errors import KoopscopeError
from ..hkd.model import HKD
from ..spectral.bands import band_names
from ..spectral.modes import level_bases
from .options import edit_time


class Trajectory(NamedTuple):
    """One batch's closed-form path: latents at the edit time and at eps, and the one-step sample."""

    z_t: list[torch.Tensor]
    z_eps: list[torch.Tensor]
    x: torch.Tensor


def level_weights(model: HKD, region: torch.Tensor, bands: Sequence[str] | None = None,
                  levels: Sequence[int] | None = None, n_bands: int = 3, method: str = "rank") -> list[torch.Tensor]:
    """Per level the mixing weight M_region * M_band, (1, d, h, w) in [0, 1]; zero on levels not chosen.

    ``region`` (H, W) is area-averaged to each level's resolution; ``bands`` None keeps every mode.
    """
    names, device = band_names(n_bands), next(model.parameters()).device
    chosen = None if bands is None else torch.tensor([names.index(b) for b in bands])
    bases = level_bases(model, n_bands, method) if chosen is not None else [None] * model.levels
    out = []
    for lv, ((d, h, w), basis) in enumerate(zip(model.cfg.unet.level_shapes(), bases)):
        m = F.adaptive_avg_pool2d(region.double().cpu()[None, None], (h, w))[0].expand(d, h, w)
        if chosen is not None:
            m = basis.keep(m[None], chosen)[0]
        out.append((m if levels is None or lv in levels else torch.zeros_like(m))[None].float().to(device))
    return out


def mix(z_gen: Sequence[torch.Tensor], z_ref: Sequence[torch.Tensor], ratio: float,
        weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """z_gen + ratio * weight * (z_ref - z_gen) per level, as lerp: z_gen where the weight is 0, z_ref where 1."""
    if not 0 <= ratio <= 1:
        raise KoopscopeError(f"ratio {ratio:g} is outside [0, 1]")
    return [torch.lerp(g, r, ratio * w) for g, r, w in zip(z_gen, z_ref, weights)]


@torch.no_grad()
def trajectory(model: HKD, seeds: Sequence[int], sigma: float) -> Trajectory:
    """Latents of the seeds' trajectories at ``sigma`` and at eps (the one-step sample's), and that sample."""
    cfg, device = model.cfg, next(model.parameters()).device
    sigma = edit_time(cfg, sigma)
    shape = (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)
    z_T = model.encode(seeded_noise(list(seeds), shape, device) * cfg.sigma_max, cfg.sigma_max)
    z_eps = model.evolve(z_T, cfg.sigma_max, cfg.sigma_min)
    return Trajectory(model.evolve(z_T, cfg.sigma_max, sigma), z_eps, model.decode(z_eps, cfg.sigma_min).float())


@torch.no_grad()
def encode_at(model: HKD, x: torch.Tensor, sigma_x: float, sigma: float) -> list[torch.Tensor]:
    """Latents at ``sigma`` of states x at noise level ``sigma_x``: encode, then propagate in closed form."""
    device = next(model.parameters()).device
    return model.evolve(model.encode(x.to(device), sigma_x), sigma_x, sigma)


@torch.no_grad()
def apply_edit(model: HKD, gen: Trajectory, z_mixed: Sequence[torch.Tensor], sigma: float):
    """(latents at eps, decoded sample) of the mixed latents z'_t of ``gen`` at ``sigma``."""
    moved = model.evolve([m - g for m, g in zip(z_mixed, gen.z_t)], sigma, model.cfg.sigma_min)
    z_eps = [z + d for z, d in zip(gen.z_eps, moved)]
    return z_eps, model.decode(z_eps, model.cfg.sigma_min).float()
