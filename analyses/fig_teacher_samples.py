"""Teacher sample grids at 35 NFE (Heun 18), 15 NFE (Heun 8) and 10 NFE (Euler 10), same seeds.

    python analyses/fig_teacher_samples.py runs/teacher-fashion/model.safetensors
writes figures/teacher_samples.png and .pdf.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from koopscope.generators import load_generator
from koopscope.io.figures import pyplot, save_figure, tile

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = [("Heun, 18 steps", 18, "heun"), ("Heun, 8 steps", 8, "heun"), ("Euler, 10 steps", 10, "euler")]


def show(ax, x: torch.Tensor, title: str) -> None:
    """Images in [-1, 1] as one square grid on ax."""
    g = (tile(x.clamp(-1, 1).numpy(), pad=0) + 1) / 2
    ax.imshow(g[0] if g.shape[0] == 1 else g.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")


def finish(fig, title: str, out: Path) -> None:
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, out)
    print(f"wrote {out}.png/.pdf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("teacher", type=Path)
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "figures/teacher_samples")
    args = ap.parse_args()
    torch.set_num_threads(1)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(4 * len(SETTINGS), 4.3))
    for ax, (label, steps, solver) in zip(axes, SETTINGS):
        gen = load_generator(args.teacher, steps=steps, solver=solver)
        x, nfe = gen(range(args.count)), gen.nfe
        show(ax, x, f"{label} ({nfe} NFE)")
    finish(fig, f"EDM teacher samples, seeds 0..{args.count - 1}", args.out)


if __name__ == "__main__":
    main()
