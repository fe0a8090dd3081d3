"""Image grids as PNG."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .atomic import atomic_path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    """Save images in [-1, 1] (N, C, H, W) as one PNG grid, atomically."""
    import numpy as np
    from PIL import Image

    n, c, h, w = images.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol = int(math.ceil(n / nrow))
    grid = torch.full((c, ncol * (h + 2) + 2, nrow * (w + 2) + 2), -1.0)
    for k in range(n):
        r, q = divmod(k, nrow)
        grid[:, 2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + q * (w + 2): 2 + q * (w + 2) + w] = images[k].float()
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[:, :, 0] if c == 1 else arr.astype(np.uint8))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
