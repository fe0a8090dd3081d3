"""ImageDataset (uint8 pixels in memory, served as floats in [-1, 1]) and resolution fitting."""

import hashlib

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


def fingerprint(tensor: torch.Tensor) -> str:
    """Short sha256 (16 hex chars) of a tensor's dtype, shape and contents."""
    array = np.ascontiguousarray(tensor.detach().cpu().numpy())
    digest = hashlib.sha256(f"{array.dtype.str}{tuple(array.shape)}".encode())
    digest.update(array.data)
    return digest.hexdigest()[:16]


def fit_resolution(images: np.ndarray, size: int) -> np.ndarray:
    """Make uint8 images (N, C, H, W) square `size`: centre-crop to square, then zero-pad or resize.

    Smaller images are padded symmetrically with 0 (the background, -1 after scaling); larger ones
    are resized with Pillow's antialiased bilinear filter.
    """
    n, c, h, w = images.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[:, :, top:top + side, left:left + side]
    if side == size:
        return images
    if side < size:
        out = np.zeros((n, c, size, size), np.uint8)
        off = (size - side) // 2
        out[:, :, off:off + side, off:off + side] = images
        return out
    out = np.empty((n, size, size, c), np.uint8)
    for i, img in enumerate(images.transpose(0, 2, 3, 1)):
        pil = Image.fromarray(img[:, :, 0] if c == 1 else np.ascontiguousarray(img))
        out[i] = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR)).reshape(size, size, c)
    return out.transpose(0, 3, 1, 2)


class ImageDataset(Dataset):
    """All images of one dataset split as a uint8 tensor `images` (N, C, H, W).

    Items are float32 in [-1, 1] (x / 127.5 - 1), horizontally flipped with probability 0.5 when
    `flip` is set. `hash` fingerprints the pixels so provenance can name the data a model saw.
    """

    def __init__(self, images, labels=None, *, name: str = "custom", split: str = "train",
                 flip: bool = False):
        self.images = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.uint8)
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise ValueError(f"labels shape {tuple(self.labels.shape)} does not match {len(self.images)} images")
        self.name, self.split, self.flip = name, split, flip
        self.channels, self.resolution = self.images.shape[1], self.images.shape[2]
        self.hash = fingerprint(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.images[i].float() / 127.5 - 1
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Float32 batch (B, C, H, W) of the images at `idx`, each flipped with prob 0.5 if `flip`."""
        x = self.images[idx.to(self.images.device)].float() / 127.5 - 1
        if self.flip:
            device = generator.device if generator is not None else x.device
            mask = torch.rand(len(x), generator=generator, device=device).to(x.device) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={tuple(self.images.shape[1:])}, hash={self.hash})")
