"""Improved precision and recall (Kynkäänniemi et al. 2019): k-NN manifolds in feature space."""

from __future__ import annotations

import numpy as np
import torch

_BLOCK_ELEMS = 1 << 24  # distance-matrix entries per block (128 MiB in float64)


def _block(n_cols: int) -> int:
    return max(1, _BLOCK_ELEMS // max(n_cols, 1))


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} samples, got {len(x)}")
    step = _block(len(x))
    return torch.cat(
        [torch.cdist(x[i : i + step], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), step)]
    )


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of points inside at least one ball (centre, radius)."""
    step = _block(len(centres))
    inside = [
        (torch.cdist(points[i : i + step], centres) <= radii).any(dim=1) for i in range(0, len(points), step)
    ]
    return torch.cat(inside).double().mean().item()


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Precision: share of fake inside the real k-NN manifold; recall: share of real inside the fake one."""
    r = torch.as_tensor(np.asarray(real, np.float64))
    f = torch.as_tensor(np.asarray(fake, np.float64))
    return _coverage(f, r, knn_radii(r, k)), _coverage(r, f, knn_radii(f, k))
