"""Fashion-MNIST from its four IDX files (default: the Debian package dataset-fashion-mnist)."""

import os
from pathlib import Path

import numpy as np

from koopscope.data.idx import read_idx
from koopscope.errors import DatasetNotFound, KoopscopeError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "KOOPSCOPE_FASHION_DIR"
_PREFIX = {"train": "train", "test": "t10k"}
_HOWTO = f"apt-get install dataset-fashion-mnist or set {ENV_VAR} / pass --data-root"


def fashion_dir(root: str | Path | None = None) -> Path:
    """The folder to search: `root`, else $KOOPSCOPE_FASHION_DIR, else the Debian location."""
    return Path(root or os.environ.get(ENV_VAR) or DEFAULT_DIR)


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DatasetNotFound(f"Fashion-MNIST file not found: looked for {folder / stem}[.gz]; {_HOWTO}")


def load_fashion(root: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return uint8 images (N, 1, 28, 28) and int64 labels (N,) of the given split."""
    folder, prefix = fashion_dir(root), _PREFIX[split]
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise KoopscopeError(
            f"Fashion-MNIST files in {folder} disagree: images {images.shape} {images.dtype}, "
            f"labels {labels.shape}"
        )
    return images[:, None], labels.astype(np.int64)
