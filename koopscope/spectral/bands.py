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

from .order import block_values, group_sums, sort_by_real

METHODS = ("rank", "quantile")


def band_names(n: int) -> list[str]:
    if n < 1:
        raise ValueError(f"the number of bands must be at least 1, got {n}")
    return ["low", "mid", "high"] if n == 3 else [f"band{i}" for i in range(n)]


def assign_bands(values: np.ndarray, pair_id: np.ndarray, n: int,
                 method: str = "rank") -> tuple[np.ndarray, np.ndarray]:
    """Band of every mode (..., m) of sorted eigenvalues, and the thresholds (n - 1,) (NaN for rank)."""
    band_names(n)
    re = np.abs(values.real).astype(np.float64)
    if method == "rank":
        size = group_sums(np.ones_like(re), pair_id)
        centre = np.take_along_axis(np.cumsum(size, -1) - size / 2, pair_id, -1)
        band = np.floor(centre * n / values.shape[-1]).astype(np.int64)
        return np.minimum(band, n - 1), np.full(n - 1, np.nan)
    if method == "quantile":
        edges = np.quantile(re.ravel(), np.arange(1, n) / n)
        return np.searchsorted(edges, re), edges
    raise ValueError(f"unknown band method '{method}'; choose one of: {', '.join(METHODS)}")


def block_modes(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Modes of one level's block generators, sorted by |Re| per location.

    alpha, beta: (K, H, W) as stored by KoopmanGenerators. Block k has the eigenvalues
    alpha_k + i beta_k, alpha_k - i beta_k (one group; ``order.block_values``). Returns
    eigenvalues (H, W, 2K) complex128, group ids (H, W, 2K) numbered in order, and the block
    k (latent channels 2k, 2k+1) of every mode.
    """
    values, ids = block_values(np.moveaxis(alpha, 0, -1), np.moveaxis(beta, 0, -1))  # blocks; groups once sorted
    order = sort_by_real(values, ids)
    return np.take_along_axis(values, order, -1), ids, np.take_along_axis(ids, order, -1)


def channel_bands(alpha: np.ndarray, beta: np.ndarray, n: int, method: str = "rank") -> np.ndarray:
    """Band of every latent channel (2K, H, W) of one level: both channels of a block share it."""
    values, pair, block = block_modes(alpha, beta)
    band, _ = assign_bands(values, pair, n, method)
    per_block = np.zeros_like(band[..., ::2])
    np.put_along_axis(per_block, block[..., ::2], band[..., ::2], -1)
    return np.moveaxis(np.repeat(per_block, 2, -1), -1, 0)
