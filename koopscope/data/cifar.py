"""CIFAR-10 from the official "python version" pickle batches (cifar-10-batches-py)."""

import os
import pickle
from pathlib import Path

import numpy as np

from koopscope.errors import DatasetNotFound, KoopscopeError

FOLDER = "cifar-10-batches-py"
ENV_VAR = "KOOPSCOPE_CIFAR10_DIR"   # the default location (FID references have no --data-root of their own)
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_HOWTO = ("download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
          f"extract it and pass --data-root or set {ENV_VAR}")
# The only globals a CIFAR batch pickle needs (numpy arrays, plus bytes as written by protocol 2).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that refuses any global outside _ALLOWED, so a batch file cannot run code."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _folder(root: str | Path | None) -> Path:
    root = root or os.environ.get(ENV_VAR)
    if root is None:
        raise DatasetNotFound(f"CIFAR-10 has no default location; {_HOWTO}")
    root = Path(root)
    for folder in (root, root / FOLDER):
        if (folder / "test_batch").is_file():
            return folder
    raise DatasetNotFound(f"CIFAR-10 batches not found in {root} or {root / FOLDER}; {_HOWTO}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], np.int64)
    except FileNotFoundError:
        raise DatasetNotFound(f"CIFAR-10 batch {path} is missing; {_HOWTO}") from None
    except (pickle.UnpicklingError, EOFError, OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise KoopscopeError(f"corrupt CIFAR-10 batch {path}: {exc}") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise KoopscopeError(f"corrupt CIFAR-10 batch {path}: data {data.shape} {data.dtype}, "
                             f"labels {labels.shape}")
    return data, labels


def load_cifar10(root: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return uint8 images (N, 3, 32, 32) and int64 labels (N,); `root` is the batch folder or its parent."""
    folder = _folder(root)
    parts = [_read_batch(folder / name) for name in _BATCHES[split]]
    data = np.concatenate([d for d, _ in parts])
    return data.reshape(-1, 3, 32, 32), np.concatenate([lab for _, lab in parts])
