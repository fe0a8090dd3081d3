"""Reference feature sets of real images, cached as .npz keyed by dataset, split, count, size and network."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from koopscope.errors import KoopscopeError
from koopscope.io.atomic import atomic_path, os_reason, strict_json
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
        np.savez(f, mu=mu, sigma=sigma, features=features.astype(np.float32), meta=strict_json(meta))
    return {"mu": mu, "sigma": sigma, "features": features, "meta": meta}


@contextmanager
def open_npz(path: str | os.PathLike):
    """np.load of an .npz, never unpickling; an unreadable file is a one-line KoopscopeError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except OSError as e:
        raise KoopscopeError(f"cannot read {path}: {os_reason(e)}") from None
    except (ValueError, EOFError, zipfile.BadZipFile):   # numpy's own text would suggest unpickling
        raise KoopscopeError(f"{path} is not an .npz file (a zip of .npy arrays, as numpy.savez writes)") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise KoopscopeError(f"{path} is a single .npy array, not an .npz with named arrays")
    with z:
        yield z


def npz_array(z, key: str, path: str | os.PathLike) -> np.ndarray:
    """Array ``key`` of an open .npz; a missing key or an object array (never unpickled) is one line."""
    if key not in z.files:
        raise KoopscopeError(f"{path} has no '{key}' array (it has: {', '.join(z.files) or 'nothing'})")
    try:
        return z[key]
    except (ValueError, OSError, zipfile.BadZipFile):
        raise KoopscopeError(f"{path}: array '{key}' is damaged or holds Python objects, which koopscope does "
                             "not load") from None


def load_reference(path: str | os.PathLike) -> dict:
    """Read a reference .npz: {"mu", "sigma", "features" (float64), "meta"}, checked for shape and type."""
    with open_npz(path) as z:
        mu, sigma, features, meta = (npz_array(z, k, path) for k in ("mu", "sigma", "features", "meta"))
    arrays = {"mu": mu, "sigma": sigma, "features": features}
    if (any(a.dtype.kind not in "biuf" for a in arrays.values()) or features.ndim != 2
            or mu.shape != features.shape[1:] or sigma.shape != features.shape[1:] * 2):
        got = ", ".join(f"{k} {a.dtype}{list(a.shape)}" for k, a in arrays.items())
        raise KoopscopeError(f"{path}: expected numeric mu (D,), sigma (D, D) and features (N, D), got {got}")
    try:
        meta = json.loads(str(meta))
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        raise KoopscopeError(f"{path}: 'meta' is not a JSON object")
    return {"mu": mu, "sigma": sigma, "features": features.astype(np.float64), "meta": meta}


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
