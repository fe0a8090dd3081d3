"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, averaged over subsets."""

from __future__ import annotations

import numpy as np


def _kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of k(x, y) = (x.y / d + 1)^3 between two (m, d) and (n, d) samples."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = _kernel(x, x), _kernel(y, y), _kernel(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kid_from_features(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID mean and std over ``subsets`` random subsets of min(subset_size, n1, n2) from each set."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    scores = [
        mmd2_unbiased(f1[rng.choice(len(f1), m, replace=False)], f2[rng.choice(len(f2), m, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(scores)), float(np.std(scores))
