"""Datasets for training and evaluation: `load_dataset(name, ...)` returns an ImageDataset."""

from pathlib import Path

from koopscope.data.cifar import load_cifar10
from koopscope.data.dataset import ImageDataset, fingerprint, fit_resolution
from koopscope.data.fashion import load_fashion
from koopscope.data.images import load_images
from koopscope.data.mnist5k import load_mnist5k
from koopscope.errors import KoopscopeError

DATASETS = ("fashion", "mnist5k", "cifar10", "images")
SPLITS = {"fashion": ("train", "test"), "mnist5k": ("train",), "cifar10": ("train", "test"),
          "images": ("train",)}

__all__ = ["DATASETS", "ImageDataset", "fingerprint", "fit_resolution", "load_dataset"]


def _check(name: str, split: str, size: int | None, limit: int | None) -> None:
    if name not in DATASETS:
        raise KoopscopeError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if split not in SPLITS[name]:
        raise KoopscopeError(f"dataset {name!r} has no split {split!r}; valid: {', '.join(SPLITS[name])}")
    if size is not None and (not isinstance(size, int) or size < 1 or size & (size - 1)):
        raise KoopscopeError(f"size must be a power of two, got {size!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise KoopscopeError(f"limit must be a positive integer, got {limit!r}")


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", size: int | None = 32,
                 flip: bool = False, limit: int | None = None) -> ImageDataset:
    """Load dataset `name` (one of DATASETS) as uint8 images fitted to `size` x `size`.

    `root` overrides where the files are looked for; `size=None` keeps the native resolution;
    `limit` keeps only the first `limit` images.
    """
    _check(name, split, size, limit)
    labels = None
    if name == "fashion":
        images, labels = load_fashion(root, split)
    elif name == "mnist5k":
        images, labels = load_mnist5k()
    elif name == "cifar10":
        images, labels = load_cifar10(root, split)
    else:
        images = load_images(root, limit)
    images = images[:limit]
    labels = None if labels is None else labels[:limit]
    if size is not None:
        images = fit_resolution(images, size)
    return ImageDataset(images, labels, name=name, split=split, flip=flip)
