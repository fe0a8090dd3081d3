"""Figures as PNG + PDF, written atomically (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

from .atomic import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, pdf: bool = True, dpi: int = 150) -> list[Path]:
    """Write ``fig`` to ``path`` (.png) and, with ``pdf``, a .pdf beside it; close it."""
    path = Path(path).with_suffix(".png")
    paths = [path] + ([path.with_suffix(".pdf")] if pdf else [])
    for p in paths:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix[1:], dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return paths
