"""Evaluate generated samples: a checkpoint (sampled batch by batch), an image folder or an .npz.

Features are extracted as batches arrive, so memory holds one batch of images plus the (N, 2048)
features. References are ``DATASET[:SPLIT]`` (cached features at the samples' resolution), a
reference .npz (``features``, as written by ``reference_features``) or a samples .npz (``images``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from koopscope.errors import DatasetNotFound, KoopscopeError
from koopscope.metrics.fid import stats
from koopscope.metrics.reference import load_reference, npz_array, open_npz, reference
from koopscope.metrics.scores import evaluate, real_vs_real_floor

REF_HELP = "use DATASET[:SPLIT] (fashion:train, fashion:test, cifar10:train, mnist5k:train) or a .npz file"


def parse_reference(spec: str | Path, floor: bool = False) -> Path | tuple[str, str]:
    """A reference .npz path, or (dataset, split); checks ``--floor`` can be served (a second split)."""
    from koopscope.data import SPLITS

    path = Path(spec)
    if path.suffix == ".npz" or path.is_file():
        if not path.is_file():
            raise KoopscopeError(f"reference file not found: {path}")
        if floor:
            raise KoopscopeError("the floor needs a dataset reference such as fashion:train, not a file")
        return path
    name, _, split = str(spec).partition(":")
    split = split or "train"
    if name == "images" or split not in SPLITS.get(name, ()):
        raise KoopscopeError(f"unknown reference {str(spec)!r}; {REF_HELP}")
    if floor and len(SPLITS[name]) < 2:
        raise KoopscopeError(f"the floor needs a second split of {name}, which has only {split}")
    return name, split


def load_samples(path: str | Path, count: int) -> tuple[torch.Tensor, int | None]:
    """The first ``count`` images of a PNG/JPEG folder or an .npz (key ``images``, NCHW or NHWC uint8),
    as uint8 (N, C, H, W), and the NFE the .npz records (``koopscope sample`` writes it), if any."""
    from koopscope.data.images import load_images

    path, nfe = Path(path), None
    if path.is_dir():
        try:
            x = load_images(path, limit=count)
        except DatasetNotFound:
            raise KoopscopeError(f"no PNG/JPEG images in {path}") from None
    else:
        with open_npz(path) as z:
            x = npz_array(z, "images", path)[:count]
            nfe = int(npz_array(z, "nfe", path)) if "nfe" in z else None
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise KoopscopeError(f"{path}: 'images' must be uint8 (N, C, H, W) or (N, H, W, C) with C = 1 or 3, "
                                 f"got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise KoopscopeError(f"{path} holds no images")
    return torch.from_numpy(np.ascontiguousarray(x)), nfe


def _extractor(extractor: Callable | None) -> Callable:
    from koopscope.metrics.inception import InceptionFeatures

    return extractor or InceptionFeatures()


def load_ref(spec: str | Path | dict, count: int, size: int, extractor: Callable | None = None,
             progress: bool = False) -> dict:
    """Reference features for ``count`` samples of resolution ``size`` (cached for datasets); a dict passes."""
    if isinstance(spec, dict):
        return spec
    ref = parse_reference(spec)
    extractor = _extractor(extractor)
    if isinstance(ref, Path):
        with open_npz(ref) as z:
            files = z.files
        if "features" in files:
            out = load_reference(ref)
        elif "images" in files:
            images, _ = load_samples(ref, count)
            feats = extractor(images, progress=progress)
            mu, sigma = stats(feats)
            out = {"mu": mu, "sigma": sigma, "features": feats,
                   "meta": {"name": "samples", "path": str(ref), "count": len(feats), "net": extractor.id}}
        else:
            raise KoopscopeError(f"{ref} holds neither 'features' (a reference) nor 'images' (samples)")
        if out["meta"].get("net") not in (None, extractor.id):
            raise KoopscopeError(f"{ref} was made with network {out['meta']['net']}, extractor is {extractor.id}")
        return out
    name, split = ref
    try:
        return reference(name, count, split=split, size=size, extractor=extractor, progress=progress)
    except ValueError as e:   # more images asked for than the split has
        raise KoopscopeError(str(e)) from None


def real_floor(spec: str, count: int, size: int, extractor: Callable | None = None, progress: bool = False,
               **kwargs) -> dict:
    """Real-vs-real floor at ``count``: the reference split against the dataset's other split (cached)."""
    name, split = parse_reference(spec, floor=True)
    other = "test" if split == "train" else "train"
    a, b = (load_ref(f"{name}:{s}", count, size, extractor, progress) for s in (split, other))
    return real_vs_real_floor(a, b, **kwargs)


def evaluate_batches(batches: Iterable, count: int, ref: dict, extractor: Callable | None = None,
                     progress: bool = False, **kwargs) -> dict:
    """Metrics of at most ``count`` images that ``batches`` yields ((B, C, H, W), [-1, 1] or uint8).

    Adds ``sample_seconds`` (time spent inside the iterator) and ``feature_seconds``; the small-count
    warning of ``evaluate`` is returned as ``note`` rather than raised. ``kwargs`` go to ``evaluate``.
    """
    extractor = _extractor(extractor)
    net = ref.get("meta", {}).get("net")
    if net not in (None, extractor.id):
        raise KoopscopeError(f"reference was made with network {net}, extractor is {extractor.id}")
    feats, n, t_sample, t_feat = None, 0, 0.0, 0.0
    step = getattr(extractor, "batch_size", 50)
    with _bar(progress, count) as advance:
        it = iter(batches)
        while n < count:
            t0 = time.perf_counter()
            x = next(it, None)
            t_sample += time.perf_counter() - t0
            if x is None:
                break
            x = x[: count - n]
            t0 = time.perf_counter()
            for i in range(0, len(x), step):
                f = extractor(x[i : i + step])
                if feats is None:
                    feats = np.empty((count, f.shape[1]))
                feats[n : n + len(f)] = f
                n += len(f)
                advance(len(f))
            t_feat += time.perf_counter() - t0
    if feats is None:
        raise KoopscopeError("no images to evaluate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = evaluate(feats[:n], ref, **kwargs)
    out["metric_seconds"] = out.pop("seconds")
    return {**out, "sample_seconds": t_sample, "feature_seconds": t_feat}


@contextmanager
def _bar(enabled: bool, total: int):
    """``with _bar(enabled, total) as advance:`` a rich progress bar over images (a no-op when disabled)."""
    from ..progress import bars

    with bars(enabled) as bar:
        task = bar.add_task(f"sampling + Inception features ({total} images)", total=total)
        yield lambda k: bar.advance(task, k)


def _check_ref(reference: str | Path | dict, with_floor: bool) -> None:
    if not isinstance(reference, dict):
        parse_reference(reference, with_floor)
    elif with_floor:
        raise KoopscopeError("the floor needs a dataset reference such as fashion:train, not features")


def _finish(batches, count, size, reference, with_floor, extractor, progress, t0, **kwargs) -> dict:
    k = kwargs.get("k", 3)
    if count <= k:
        raise KoopscopeError(f"{count} images are too few: precision/recall with k={k} need at least {k + 1}")
    extractor = _extractor(extractor)
    ref = load_ref(reference, count, size, extractor, progress)
    out = evaluate_batches(batches, count, ref, extractor, progress, **kwargs)
    if with_floor:
        out["floor"] = real_floor(reference, out["count"], size, extractor, progress, **kwargs)
    out["seconds"] = time.perf_counter() - t0
    return out


def evaluate_checkpoint(ckpt: str | Path, count: int, reference: str | Path | dict = "fashion:train",
                        steps: int | None = None, solver: str = "heun", seed: int = 0, batch: int = 256,
                        floor: bool = False, extractor: Callable | None = None, progress: bool = False,
                        **kwargs) -> dict:
    """FID, KID, precision/recall of ``count`` samples (seeds seed + i) of a teacher, HKD, KD or CD checkpoint.

    The teacher runs ``solver`` with ``steps`` grid points (default: the checkpoint's), CD ``steps`` steps
    (default 1); HKD and KD are one step (``generators.load_generator``).
    ``floor=True`` adds ``"floor"``: the real-vs-real floor at the same count (dataset references only).
    ``seconds`` is the whole evaluation; ``kwargs`` go to ``metrics.evaluate``.
    """
    from koopscope.generators import load_generator

    t0 = time.perf_counter()
    if count <= 0:
        raise KoopscopeError("count must be positive")
    gen = load_generator(ckpt, steps=steps, solver=solver)
    _check_ref(reference, floor)
    batches = (gen(range(s, min(s + batch, seed + count)), batch=batch) for s in range(seed, seed + count, batch))
    size = int(gen.meta["config"]["image_shape"][-1])
    out = _finish(batches, count, size, reference, floor, extractor, progress, t0, **kwargs)
    return {**out, "source": str(ckpt), "kind": gen.kind, "steps": gen.steps, "solver": gen.solver, "seed": seed,
            "nfe": gen.nfe}


def evaluate_files(path: str | Path, count: int, reference: str | Path | dict = "fashion:train",
                   batch: int = 256, floor: bool = False, extractor: Callable | None = None,
                   progress: bool = False, **kwargs) -> dict:
    """As ``evaluate_checkpoint`` for the first ``count`` images of a PNG/JPEG folder or an .npz."""
    t0 = time.perf_counter()
    if count <= 0:
        raise KoopscopeError("count must be positive")
    images, nfe = load_samples(path, count)
    _check_ref(reference, floor)
    batches = (images[i : i + batch] for i in range(0, len(images), batch))
    out = _finish(batches, len(images), int(images.shape[-1]), reference, floor, extractor, progress, t0, **kwargs)
    return {**out, "source": str(path), "kind": "images", "steps": None, "solver": None, "seed": None, "nfe": nfe}
