"""Figures as PNG + PDF, written atomically (no display needed), and image mosaics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .atomic import atomic_path


def tile(images, per_row: int | None = None, pad: int = 2, fill: float = -1.0) -> np.ndarray:
    """Images (N, C, H, W) as one mosaic (C, H', W'), row by row, ``per_row`` to a row (default: a square),
    ``pad`` pixels of ``fill`` around each; a partial last row keeps its images."""
    images = np.asarray(images, dtype=np.float32)
    n, c, h, w = images.shape
    per_row = per_row or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / per_row)
    out = np.full((c, rows * (h + pad) + pad, per_row * (w + pad) + pad), fill, np.float32)
    for k in range(n):
        r, q = divmod(k, per_row)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[:, y:y + h, x:x + w] = images[k]
    return out


def count_ticks(axis) -> None:
    """Label a matplotlib axis of counts (training images) 0, 50k, 1.5M rather than 50000 or 1e6."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(
        lambda v, _: f"{v / 1e6:g}M" if abs(v) >= 1e6 else f"{v / 1e3:g}k" if v else "0"))


def plain_log_ticks(axis, leading: str) -> None:
    """Label a log-scale matplotlib axis with plain numbers (0.05, 20) at the ticks whose leading digit is in
    ``leading`` (e.g. "1235"), leaving the others blank, rather than 5 x 10^-2 at every one."""
    from matplotlib.ticker import FuncFormatter

    label = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in leading else "")
    axis.set_major_formatter(label)
    axis.set_minor_formatter(label)


def pyplot():
    """matplotlib.pyplot on the backend already chosen (never switched here: a notebook keeps its inline figures;
    the CLI chooses Agg)."""
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, pdf: bool = True, dpi: int = 150) -> list[Path]:
    """Write ``fig`` to ``path`` (.png) and, with ``pdf``, a .pdf beside it; close it."""
    path = Path(path).with_suffix(".png")
    paths = [path] + ([path.with_suffix(".pdf")] if pdf else [])
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix[1:], dpi=dpi, bbox_inches="tight",   # no date: the same figure,
                        metadata={"CreationDate": None} if p.suffix == ".pdf" else None)   # the same bytes
    pyplot().close(fig)
    return paths
