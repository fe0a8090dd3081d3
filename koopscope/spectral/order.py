"""The eigenvalues of HKD's 2x2 blocks and the |Re| order of modes, in numpy (shared by the torch-free spectrum,
``eig.block_eigs`` and ``dense_eigs``).

Modes lie on the last axis; ``pair_id`` (..., n) names each mode's conjugate group, ids < n.
"""

from __future__ import annotations

import numpy as np


def block_values(alpha, beta) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of block-diagonal generators with blocks [[alpha_k, -beta_k], [beta_k, alpha_k]].

    alpha, beta: (..., K). Returns eigenvalues (..., 2K) complex128 ordered (alpha_k + i beta_k,
    alpha_k - i beta_k) per block, and each mode's block k (..., 2K): the two modes of a block form one
    conjugate group even when beta_k = 0, since their coefficients are then conjugate.
    """
    lam = np.asarray(alpha, np.float64) + 1j * np.asarray(beta, np.float64)
    values = np.stack((lam, lam.conj()), -1).reshape(*lam.shape[:-1], -1)
    return values, np.broadcast_to(np.arange(values.shape[-1]) // 2, values.shape)


def group_sums(x: np.ndarray, pair_id: np.ndarray) -> np.ndarray:
    """Per location, the sum of x over the modes of every group id 0 .. n-1: shape (..., n)."""
    x, pair_id = np.broadcast_arrays(x, pair_id)
    n = x.shape[-1]
    ids = pair_id + n * np.arange(x.size // n).reshape(*x.shape[:-1], 1)
    return np.bincount(ids.ravel(), x.ravel(), minlength=x.size).reshape(x.shape)


def _group_mean(x: np.ndarray, pair_id: np.ndarray) -> np.ndarray:
    """Mean of x over each mode's group, broadcast back to the modes."""
    mean = group_sums(x, pair_id) / np.maximum(group_sums(np.ones_like(x), pair_id), 1)
    return np.take_along_axis(mean, pair_id, -1).astype(x.dtype)


def sort_by_real(values: np.ndarray, pair_id: np.ndarray) -> np.ndarray:
    """Indices (..., n) ordering modes by |Re| ascending, groups kept contiguous.

    Ties are broken by |Im|, then by Re, then by group; within a pair the mode with positive
    imaginary part comes first.
    """
    values, pair_id = np.broadcast_arrays(values, pair_id)
    re = _group_mean(values.real, pair_id)
    im = _group_mean(np.abs(values.imag), pair_id)
    return np.lexsort((-values.imag, pair_id.astype(re.dtype), re, im, np.abs(re)), axis=-1)  # last key first
