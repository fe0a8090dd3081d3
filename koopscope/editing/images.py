"""Real images for editing and inpainting: ``dataset:split:index`` or a PNG/JPEG file, as the model sees them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import KoopscopeError


def image_names(spec: str, count: int) -> list[str]:
    """One name per row: consecutive dataset indices from ``dataset:split:index``, or the file each time."""
    source = _dataset_spec(spec)
    if source is None:
        return [spec] * count
    name, split, index = source
    return [f"{name}:{split}:{index + i}" for i in range(count)]


def read_images(spec: str, count: int, shape: tuple[int, int, int], root: str | Path | None = None) -> np.ndarray:
    """``count`` images (count, C, H, W) float64 in [-1, 1] fitted to ``shape`` as the datasets fit theirs.

    ``dataset:split:index`` gives the images index .. index + count - 1 of that split; a file gives itself
    ``count`` times.
    """
    from ..data import fit_resolution, load_dataset

    channels, size = shape[0], shape[1]
    source = _dataset_spec(spec)
    if source is None:
        pixels = fit_resolution(_read_file(Path(spec), channels)[None], size)
    else:
        name, split, index = source
        data = load_dataset(name, root, split=split, size=size, limit=index + count)
        if index + count > len(data):
            raise KoopscopeError(f"{spec}: {name}:{split} has {len(data)} images; index {index} with {count} rows "
                                 "runs past its end")
        pixels = data.images[index:index + count].numpy()
        if pixels.shape[1] != channels:
            raise KoopscopeError(f"{spec}: {pixels.shape[1]}-channel images; the model takes {channels}")
    return np.broadcast_to(pixels.astype(np.float64) / 127.5 - 1, (count, *shape)).copy()


def _dataset_spec(spec: str) -> tuple[str, str, int] | None:
    from ..data import DATASETS

    parts = spec.split(":")
    if len(parts) != 3 or parts[0] not in DATASETS:
        return None
    try:
        index = int(parts[2])
    except ValueError:
        raise KoopscopeError(f"image '{spec}': write a dataset image as dataset:split:index") from None
    if index < 0:
        raise KoopscopeError(f"image '{spec}': the index must be non-negative")
    return parts[0], parts[1], index


def _read_file(path: Path, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise KoopscopeError(f"image not found: {path} (give a PNG/JPEG file or dataset:split:index, "
                             "e.g. fashion:test:17)")
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        raise KoopscopeError(f"cannot read image {path}: not an image Pillow can read") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
