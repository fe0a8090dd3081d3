"""Eigendecompositions of Koopman generators, modal projection and real reconstruction.

Two paths, both returning ``Eig(values, vectors, pair_id)`` with complex eigenvalues
(..., n), right eigenvectors as columns (..., n, n) and ``pair_id`` (..., n) naming the
conjugate group of each mode (a complex pair shares an id, a real eigenvalue is alone):

- ``block_eigs``: exact and free for HKD's 2x2 block form. For KoopmanGenerators pass
  ``alpha.permute(1, 2, 0)`` and ``beta.permute(1, 2, 0)`` to get (H, W, dim) eigenvalues.
- ``dense_eigs``: any batch of dense real generators (e.g. a Koopman-CFM generator).

Vectors live on the last axis: move an HKD latent (B, dim, H, W) to (B, H, W, dim) before
``project``. For defective generators the eigenvector matrix is (numerically) singular;
``project`` then returns minimum-norm least-squares coefficients (pseudo-inverse) and the
all-modes reconstruction is the projection onto the span of the eigenvectors, not z itself.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from . import order


class Eig(NamedTuple):
    """Eigenvalues (..., n), eigenvectors as columns (..., n, n), conjugate group ids (..., n)."""

    values: Tensor
    vectors: Tensor
    pair_id: Tensor


def block_eigs(alpha: Tensor, beta: Tensor) -> Eig:
    """Eigenpairs of block-diagonal generators with blocks [[alpha_k, -beta_k], [beta_k, alpha_k]].

    alpha, beta: (..., K). Eigenvalues and groups as ``order.block_values`` (as tensors of alpha's
    complex dtype, on its device), eigenvectors (e_2k - i e_2k+1) / sqrt 2 and (e_2k + i e_2k+1) / sqrt 2
    (one unitary matrix, independent of the parameters, returned as an expanded view).
    """
    values, ids = order.block_values(alpha.detach().cpu().numpy(), beta.detach().cpu().numpy())
    values = torch.from_numpy(values).to(alpha.device, alpha.dtype.to_complex())
    pair_id = torch.from_numpy(np.ascontiguousarray(ids)).to(alpha.device)
    k = alpha.shape[-1]
    s = 2 ** -0.5
    block = torch.tensor([[s, s], [-1j * s, 1j * s]], dtype=values.dtype, device=values.device)
    vectors = torch.kron(torch.eye(k, dtype=values.dtype, device=values.device), block)
    return Eig(values, vectors.expand(*values.shape, -1), pair_id)


def dense_eigs(A: Tensor | np.ndarray) -> Eig:
    """Eigenpairs of real matrices A (..., n, n), computed in float64, sorted by ``sort_by_real``.

    Uses LAPACK geev (numpy), which returns each complex pair adjacently as exact conjugates
    (positive imaginary part first) and real eigenvalues with real eigenvectors. Defective or
    repeated eigenvalues give finite, possibly parallel eigenvectors. Results are complex128
    tensors on A's device (CPU for numpy input).
    """
    device = A.device if isinstance(A, Tensor) else torch.device("cpu")
    a = A.detach().cpu().double().numpy() if isinstance(A, Tensor) else np.asarray(A, dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"expected square matrices (..., n, n), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("generator contains NaN or infinite entries")
    w, v = np.linalg.eig(a)
    values, vectors = w.astype(np.complex128), v.astype(np.complex128)
    first = values.imag > 0
    second = np.zeros_like(first)
    second[..., 1:] = first[..., :-1]
    paired = values[..., 1:][first[..., :-1]] == values[..., :-1][first[..., :-1]].conj()
    if first[..., -1].any() or not paired.all():
        raise RuntimeError("eig did not return adjacent conjugate pairs")
    pair_id = np.cumsum(~second, -1) - 1
    idx = order.sort_by_real(values, pair_id)
    values = np.take_along_axis(values, idx, -1)
    vectors = np.take_along_axis(vectors, idx[..., None, :], -1)
    pair_id = np.take_along_axis(pair_id, idx, -1)
    new_group = np.ones_like(first)
    new_group[..., 1:] = pair_id[..., 1:] != pair_id[..., :-1]
    return Eig(*(torch.from_numpy(x).to(device) for x in (values, vectors, np.cumsum(new_group, -1) - 1)))


def sort_by_real(values: Tensor, pair_id: Tensor) -> Tensor:
    """``order.sort_by_real`` on tensors: indices (..., n) ordering modes by |Re|, groups contiguous."""
    idx = order.sort_by_real(values.detach().cpu().numpy(), pair_id.cpu().numpy())
    return torch.from_numpy(idx).to(values.device)


def close_mask(mask: Tensor, pair_id: Tensor) -> Tensor:
    """Expand a boolean mode mask (..., n) to whole conjugate groups."""
    mask, pair_id = torch.broadcast_tensors(mask.bool(), pair_id)
    hit = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    hit = hit.scatter_reduce(-1, pair_id, mask.float(), "amax")
    return hit.gather(-1, pair_id) > 0


def _inverse(vectors: Tensor) -> Tensor:
    """V^-1 per matrix by LU; the SVD pseudo-inverse where V is singular or ill conditioned."""
    inv, info = torch.linalg.inv_ex(vectors)
    limit = vectors.shape[-1] / torch.finfo(vectors.real.dtype).eps ** 0.5
    cond = torch.linalg.matrix_norm(vectors) * torch.linalg.matrix_norm(inv)  # Frobenius, >= n
    bad = (info != 0) | ~torch.isfinite(cond) | (cond > limit)
    if bad.any():
        inv[bad] = torch.linalg.pinv(vectors[bad])
    return inv


def project(z: Tensor, vectors: Tensor) -> Tensor:
    """Modal coordinates c = V^-1 z for z (..., n), real or complex.

    V^-1 is the LU inverse where V's Frobenius condition number is below n / sqrt(eps), and
    the pseudo-inverse (minimum-norm least squares) elsewhere, e.g. for defective generators.
    """
    return (_inverse(vectors) @ z.to(vectors.dtype).unsqueeze(-1)).squeeze(-1)


def reconstruct(coeffs: Tensor, vectors: Tensor, mask: Tensor | None = None,
                pair_id: Tensor | None = None) -> Tensor:
    """Real state Re(V (c * mask)) from the modes in ``mask`` (all when None).

    The mask is closed under conjugation with ``pair_id`` first, so that the imaginary
    parts of paired modes cancel; masks of a partition of the modes sum to the full result.
    """
    if mask is not None:
        if pair_id is None:
            raise ValueError("reconstruct needs pair_id to close a mode mask under conjugation")
        coeffs = coeffs * close_mask(mask, pair_id)
    return (vectors @ coeffs.unsqueeze(-1)).squeeze(-1).real
