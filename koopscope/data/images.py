"""A folder or .zip of PNG/JPEG images (e.g. FFHQ-64), read in sorted path order as RGB."""

import io
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from koopscope.errors import DatasetNotFound, KoopscopeError

EXTENSIONS = (".png", ".jpg", ".jpeg")
ENV_VAR = "KOOPSCOPE_IMAGES_DIR"   # the default location (FID references have no --data-root of their own)
_HOWTO = f"pass --data-root pointing at a folder or .zip of PNG/JPEG images, or set {ENV_VAR}"


@contextmanager
def _sources(root: Path) -> Iterator[list[tuple[str, Callable[[], bytes]]]]:
    """(name, reader) pairs for every image under `root`, sorted by path; readers work inside the block."""
    if root.is_dir():
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        yield [(str(p), p.read_bytes) for p in paths]
    elif root.is_file() and zipfile.is_zipfile(root):
        with zipfile.ZipFile(root) as archive:
            names = sorted(n for n in archive.namelist()
                           if Path(n).suffix.lower() in EXTENSIONS and not n.startswith("__MACOSX/"))
            yield [(f"{root}:{n}", lambda n=n: archive.read(n)) for n in names]
    else:
        raise DatasetNotFound(f"no image folder or .zip at {root}; {_HOWTO}")


def _decode(name: str, data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:
        raise KoopscopeError(f"cannot decode image {name}: not a PNG/JPEG file Pillow can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise KoopscopeError(f"cannot decode image {name}: {exc}") from None


def load_images(root: str | Path | None, limit: int | None = None) -> np.ndarray:
    """Return uint8 images (N, 3, H, W); all files must share one size."""
    root = root or os.environ.get(ENV_VAR)
    if root is None:
        raise DatasetNotFound(f"the images dataset has no default location; {_HOWTO}")
    root = Path(root)
    with _sources(root) as sources:
        sources = sources[:limit]
        if not sources:
            raise DatasetNotFound(f"no PNG/JPEG images found in {root}; {_HOWTO}")
        out = None
        for i, (name, read) in enumerate(sources):
            pixels = _decode(name, read())
            if out is None:
                out = np.empty((len(sources), *pixels.shape), np.uint8)
            elif pixels.shape != out.shape[1:]:
                raise KoopscopeError(
                    f"image {name} is {pixels.shape[1]}x{pixels.shape[0]}, but earlier images are "
                    f"{out.shape[2]}x{out.shape[1]}; all images must have the same size")
            out[i] = pixels
    return out.transpose(0, 3, 1, 2)
