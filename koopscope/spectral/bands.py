"""Spectral bands: each level's modes split by real-part magnitude, conjugate pairs together.

Modes arrive sorted by |Re| per location (``sort_by_real``), each conjugate group contiguous
and numbered 0, 1, ... in that order. Two ways to cut them into ``n`` bands:

- ``"rank"``: per location, by position. A group of size s starting at position p among m
  modes goes to band floor(n (p + s/2) / m): every location gets the same split, the
  lowest third of its own modes in "low" and so on.
- ``"quantile"``: across the level, by |Re| thresholds t_1 <= ... <= t_{n-1}, the k/n
  quantiles of |Re| over all modes of the level; band b holds t_b < |Re| <= t_{b+1} (ties
  go to the lower band). A pair shares its real part, so it never splits.

Band names are low / mid / high for three bands, else band0 .. band{n-1}.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .eig import block_eigs, sort_by_real

METHODS = ("rank", "quantile")


def band_names(n: int) -> list[str]:
    if n < 1:
        raise ValueError(f"the number of bands must be at least 1, got {n}")
    return ["low", "mid", "high"] if n == 3 else [f"band{i}" for i in range(n)]


def assign_bands(values: Tensor, pair_id: Tensor, n: int, method: str = "rank") -> tuple[Tensor, Tensor]:
    """Band of every mode (..., m) of sorted eigenvalues, and the thresholds (n - 1,) (NaN for rank)."""
    band_names(n)
    re = values.real.abs().double()
    if method == "rank":
        size = torch.zeros_like(re).scatter_add(-1, pair_id, torch.ones_like(re))
        centre = (torch.cumsum(size, -1) - size / 2).gather(-1, pair_id)
        band = torch.floor(centre * n / values.shape[-1]).long().clamp(max=n - 1)
        return band, torch.full((n - 1,), float("nan"), dtype=torch.float64)
    if method == "quantile":
        edges = torch.from_numpy(np.quantile(re.flatten().numpy(), np.arange(1, n) / n)).double()
        return torch.searchsorted(edges, re.contiguous()), edges
    raise ValueError(f"unknown band method '{method}'; choose one of: {', '.join(METHODS)}")


def block_modes(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Modes of one level's block generators, sorted by |Re| per location.

    alpha, beta: (K, H, W) as stored by KoopmanGenerators. Returns eigenvalues (H, W, 2K)
    complex128, group ids (H, W, 2K) numbered in order, and the block k (latent channels
    2k, 2k+1) of every mode.
    """
    eig = block_eigs(alpha.detach().double().permute(1, 2, 0), beta.detach().double().permute(1, 2, 0))
    order = sort_by_real(eig.values, eig.pair_id)
    pair = torch.arange(order.shape[-1]).div(2, rounding_mode="floor").expand(order.shape)
    return eig.values.gather(-1, order), pair, eig.pair_id.gather(-1, order)


def channel_bands(alpha: Tensor, beta: Tensor, n: int, method: str = "rank") -> Tensor:
    """Band of every latent channel (2K, H, W) of one level: both channels of a block share it."""
    values, pair, block = block_modes(alpha, beta)
    band, _ = assign_bands(values, pair, n, method)
    per_block = torch.zeros_like(band[..., ::2]).scatter_(-1, block[..., ::2], band[..., ::2])
    return per_block.repeat_interleave(2, -1).permute(2, 0, 1)
