"""One-call evaluation of generated samples against a reference set, and the real-vs-real floor."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from koopscope.errors import KoopscopeError
from koopscope.metrics.fid import fid_from_stats, stats
from koopscope.metrics.kid import kid_from_features
from koopscope.metrics.prdc import precision_recall
from koopscope.metrics.reference import load_reference

SMALL_COUNT = 10_000


def _as_reference(reference: dict | str | os.PathLike | np.ndarray) -> dict:
    if isinstance(reference, dict):
        return reference
    if isinstance(reference, np.ndarray):
        mu, sigma = stats(reference)
        return {"mu": mu, "sigma": sigma, "features": np.asarray(reference, np.float64), "meta": {}}
    return load_reference(reference)


def evaluate(
    fake: torch.Tensor | np.ndarray,
    reference: dict | str | os.PathLike,
    extractor: Callable | None = None,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """FID, KID, precision and recall of ``fake`` against ``reference`` (dict or .npz from reference.py).

    ``fake`` is images (N, C, H, W) in [-1, 1] or uint8, or already-extracted (N, 2048) features.
    FID uses the reference's full statistics; precision/recall use equally many samples from each
    side (the larger set is subsampled with ``seed``), as k-NN radii depend on set size.
    """
    t0 = time.perf_counter()
    ref = _as_reference(reference)
    meta = dict(ref.get("meta", {}))
    if np.ndim(fake) == 2:
        feats = np.asarray(fake, np.float64)
    else:
        from koopscope.metrics.inception import InceptionFeatures

        extractor = extractor or InceptionFeatures()
        if meta.get("net") not in (None, extractor.id):
            raise KoopscopeError(
                f"reference was made with network {meta['net']}, extractor is {extractor.id}"
            )
        feats = extractor(fake, progress=progress)
    real = ref["features"]
    n = len(feats)
    kid_mean, kid_std = kid_from_features(real, feats, kid_subsets, kid_subset_size, seed)
    rng = np.random.default_rng(seed)
    m = min(len(real), n)
    pr_real = real[rng.choice(len(real), m, replace=False)] if len(real) > m else real
    pr_fake = feats[rng.choice(n, m, replace=False)] if n > m else feats
    precision, recall = precision_recall(pr_real, pr_fake, k)
    note = None
    if n < SMALL_COUNT:
        note = (
            f"FID from {n} < {SMALL_COUNT} samples is biased upward; "
            "compare with real_vs_real_floor at the same count"
        )
        warnings.warn(note, stacklevel=2)
    return {
        "fid": fid_from_stats(*stats(feats), ref["mu"], ref["sigma"]),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        "count": n,
        "reference": meta,
        "note": note,
        "seconds": time.perf_counter() - t0,
    }


def real_vs_real_floor(
    real_a: dict | str | os.PathLike | np.ndarray, real_b: dict | str | os.PathLike | np.ndarray, **kwargs
) -> dict:
    """Metrics between two disjoint real feature sets trimmed to the same count.

    E.g. ``real_vs_real_floor(reference("fashion_mnist", 1000, split="train"),
    reference("fashion_mnist", 1000, split="test"))``: the score a perfect generator would get at
    that count, the floor against which small-count numbers are read. ``kwargs`` go to ``evaluate``.
    """
    a, b = _as_reference(real_a), _as_reference(real_b)
    ma, mb = a.get("meta", {}), b.get("meta", {})
    if ma and (ma.get("name"), ma.get("split")) == (mb.get("name"), mb.get("split")):
        raise ValueError(
            f"both sets are {ma.get('name')}/{ma.get('split')}: they overlap; use disjoint splits"
        )
    n = min(len(a["features"]), len(b["features"]))
    fa = a["features"][:n]
    mu, sigma = stats(fa)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = evaluate(b["features"][:n], {"mu": mu, "sigma": sigma, "features": fa, "meta": ma}, **kwargs)
    out["against"] = mb
    return out
