"""Deterministic inversion of real images through the teacher's PF-ODE (docs/method.md §8).

The real image is taken as the state at eps and the probability-flow ODE is integrated backwards,
eps -> T, with the teacher's own Heun sampler on its Karras grid read in reverse (float64 state,
2 NFE per step). ``regenerate`` runs the teacher's ordinary sampler from the result; its distance to
the image is the inversion error.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..diffusion.config import SIGMA_MAX, SIGMA_MIN
from ..diffusion.samplers import heun, karras_sigmas


class Inversion(NamedTuple):
    x_T: torch.Tensor     # (B, C, H, W) float64: the state at T
    x_at: torch.Tensor    # the state at ``sigma_at`` (x_T when none was asked for)
    nfe: int


def inversion_grid(steps: int, sigma_at: float | None = None) -> torch.Tensor:
    """The Karras grid of ``steps`` points from eps up to T (float64), with ``sigma_at`` inserted."""
    grid = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX, final_zero=False).flip(0)
    if sigma_at is not None and not torch.isclose(grid, torch.tensor(float(sigma_at), dtype=grid.dtype)).any():
        grid = torch.cat([grid, torch.tensor([float(sigma_at)], dtype=grid.dtype)]).sort().values
    return grid


@torch.no_grad()
def invert(denoiser, x0: torch.Tensor, steps: int = 18, sigma_at: float | None = None) -> Inversion:
    """Integrate the PF-ODE from x0 (taken as the state at eps) back to T; also keep the state at ``sigma_at``."""
    grid = inversion_grid(steps, sigma_at)
    at = None if sigma_at is None else int(torch.argmin((grid - sigma_at).abs()))
    kept = {}

    def keep(i: int, _sigma: float, x: torch.Tensor) -> None:
        if i == at:
            kept["x"] = x.clone()

    x_T, nfe = heun(denoiser, x0.to(torch.float64), grid, keep)
    return Inversion(x_T, kept.get("x", x_T), nfe)


@torch.no_grad()
def regenerate(denoiser, x_T: torch.Tensor, steps: int = 18) -> torch.Tensor:
    """The teacher's ordinary Heun sample (to sigma = 0) from the state x_T."""
    return heun(denoiser, x_T, karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX))[0]
