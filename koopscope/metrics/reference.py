"""Reference feature sets of real images, cached as .npz keyed by dataset, split, count, size and network."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from koopscope.io.atomic import atomic_path
from koopscope.metrics.fid import stats

if TYPE_CHECKING:
    from koopscope.data import ImageDataset

ENV_CACHE = "KOOPSCOPE_CACHE"


def cache_dir() -> Path:
    """$KOOPSCOPE_CACHE, else ~/.cache/koopscope/fid."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "koopscope" / "fid")


def save_reference(path: Path, features: np.ndarray, meta: dict) -> dict:
    """Write mu, sigma, features (float32, as the network emits them) and meta atomically; return the dict."""
    features = np.asarray(features, np.float64)
    mu, sigma = stats(features)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, mu=mu, sigma=sigma, features=features.astype(np.float32), meta=json.dumps(meta))
    return {"mu": mu, "sigma": sigma, "features": features, "meta": meta}


def load_reference(path: str | os.PathLike) -> dict:
    """Read a reference .npz: {"mu", "sigma", "features" (float64), "meta"}."""
    with np.load(path, allow_pickle=False) as z:
        return {
            "mu": z["mu"],
            "sigma": z["sigma"],
            "features": z["features"].astype(np.float64),
            "meta": json.loads(str(z["meta"])),
        }


def reference_features(
    dataset: ImageDataset,
    count: int,
    extractor: Callable | None = None,
    seed: int = 0,
    cache: bool = True,
    progress: bool = False,
) -> dict:
    """Features of ``count`` images drawn (seeded, without replacement) from ``dataset.images``.

    Images are used at the dataset's resolution: load it at its native size or at the size samples
    are produced (``load_dataset(..., size=32)``). ``extractor`` defaults to ``InceptionFeatures()``.
    """
    from koopscope.metrics.inception import InceptionFeatures

    images = dataset.images
    if count > len(images):
        raise ValueError(f"{dataset.name}/{dataset.split} has {len(images)} images, asked for {count}")
    extractor = extractor or InceptionFeatures()
    resolution = int(images.shape[-1])
    data_hash = str(getattr(dataset, "hash", "") or "nohash")[:8]
    key = f"{dataset.name}-{dataset.split}-n{count}-r{resolution}-s{seed}-{data_hash}-{extractor.id}"
    path = cache_dir() / f"{key}.npz"
    meta = {
        "name": dataset.name,
        "split": dataset.split,
        "count": count,
        "resolution": resolution,
        "net": extractor.id,
        "data": data_hash,
        "seed": seed,
        "path": str(path) if cache else None,
    }

    def compute():
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
        return extractor(images[idx], progress=progress)

    return cached_features(path, meta, compute, cache)


def cached_features(path: Path, meta: dict, compute: Callable[[], np.ndarray], cache: bool = True) -> dict:
    """The reference dict stored at ``path`` if there, else ``compute()``'s features, saved there when caching."""
    if cache and path.is_file():
        return load_reference(path)
    features = compute()
    if cache:
        return save_reference(path, features, meta)
    mu, sigma = stats(features)
    return {"mu": mu, "sigma": sigma, "features": features, "meta": meta}


def reference(
    name: str,
    count: int,
    split: str = "train",
    size: int | None = 32,
    root: str | os.PathLike | None = None,
    **kwargs,
) -> dict:
    """Load dataset ``name`` via koopscope.data and return its (cached) reference features.

    ``size`` as in ``load_dataset`` (32 by default, None for native); keyword arguments go to
    ``reference_features``.
    """
    from koopscope.data import load_dataset

    ds = load_dataset(name, root=root, split=split, size=size)
    return reference_features(ds, count, **kwargs)
