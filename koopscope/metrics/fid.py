"""Fréchet Inception Distance in float64."""

from __future__ import annotations

import numpy as np


def stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features, float64."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).

    Tr (S1 S2)^{1/2} is the sum of square roots of the eigenvalues of the symmetric PSD matrix
    S1^{1/2} S2 S1^{1/2} (same spectrum as S1 S2), so the result is real without discarding
    imaginary parts, and rank-deficient covariances (N < D) are fine.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two (N, D) feature sets."""
    return fid_from_stats(*stats(f1), *stats(f2))
