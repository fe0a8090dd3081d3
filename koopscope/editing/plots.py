"""Figures of editing and inpainting: image tables (the paper's Figure 3 layout) and the locality plot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..io.figures import pyplot


def _display(img: np.ndarray) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) in [0, 1]."""
    img = np.clip((np.asarray(img, np.float64) + 1) / 2, 0, 1)
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def image_table(columns: Sequence[tuple[str, np.ndarray]], row_labels: Sequence[str], region: np.ndarray,
                outlined: Sequence[int] = (0,)):
    """One image per row and column (titles on top, row labels left); the region outlined in columns ``outlined``."""
    plt = pyplot()
    rows, cols = len(row_labels), len(columns)
    fig, axes = plt.subplots(rows, cols, figsize=(1.15 * cols + 0.6, 1.15 * rows + 0.3), squeeze=False)
    for j, (title, images) in enumerate(columns):
        for i in range(rows):
            ax = axes[i, j]
            ax.imshow(_display(images[i]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if j in outlined:
                ax.contour(region, levels=[0.5], colors="tab:red", linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title(title, fontsize=7)
    for i, label in enumerate(row_labels):
        axes[i, 0].set_ylabel(label, fontsize=6)
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return fig


def figure3(original, aware: Sequence, agnostic, reference, ratios: Sequence[float], band: str,
            row_labels: Sequence[str], region: np.ndarray):
    """The paper's Figure 3 layout: original, the frequency-aware edits at each ratio, the frequency-agnostic
    edit at the last ratio, the reference; one row per sample."""
    columns = [("original", original), *[(f"{band} {r:.0%}", x) for r, x in zip(ratios, aware)],
               (f"all {ratios[-1]:.0%}", agnostic), ("reference", reference)]
    return image_table(columns, row_labels, region)


def plot_locality(tab: dict, band: str, title: str = ""):
    """Low- and high-pass change inside the region (share of the reference's difference moved in) and the
    change outside it, against the ratio, for the frequency-aware and the frequency-agnostic edit."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    axes[0].sharey(axes[1])
    r = tab["ratios"]
    panels = (("low_transfer", "low-pass change inside\n(share of the reference's)"),
              ("high_transfer", "high-pass change inside\n(share of the reference's)"),
              ("image_outside", "RMS image change outside the region"))
    for ax, (key, label) in zip(axes, panels):
        for kind, style, name in (("aware", "o-", f"bands: {band}"), ("agnostic", "s--", "all bands")):
            ax.plot(r, [row[key] for row in tab[kind]], style, label=name, ms=4)
        ax.set_xlabel("ratio r")
        ax.set_title(label, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
