"""Image grids as PNG."""

from __future__ import annotations

from pathlib import Path

import torch

from .atomic import atomic_path
from .figures import tile


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    """Save images in [-1, 1] (N, C, H, W) as one PNG grid (``nrow`` images to a row), atomically."""
    import numpy as np
    from PIL import Image

    grid = tile(images.detach().float().cpu().numpy(), nrow)
    arr = ((np.clip(grid, -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(1, 2, 0)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
