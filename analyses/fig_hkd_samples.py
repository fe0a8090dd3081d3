"""The teacher at 35 NFE beside its one-step HKD student, same seeds (same initial noise).

    python analyses/fig_hkd_samples.py [--teacher T.safetensors] [--hkd H.safetensors] [--seed 1000000]
writes figures/hkd_samples.png and .pdf (default: the shipped teacher and student).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from fig_teacher_samples import finish, show

from koopscope.generators import load_generator
from koopscope.io.figures import pyplot
from koopscope.models import default_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, default=ROOT / "koopscope/models/teacher-fashion.safetensors")
    ap.add_argument("--hkd", type=Path, default=None, help="HKD checkpoint (default: the shipped model)")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1_000_000, help="first seed (held out from HKD training)")
    ap.add_argument("--out", type=Path, default=ROOT / "figures/hkd_samples")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = range(args.seed, args.seed + args.count)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    for ax, (label, path) in zip(axes, [("teacher, Heun 18", args.teacher),
                                        ("HKD, one step", args.hkd or default_checkpoint()[0])]):
        gen = load_generator(path)
        x, nfe = gen(seeds), gen.nfe
        show(ax, x, f"{label} ({nfe} NFE)")
    finish(fig, f"same initial noise, seeds {args.seed}..{seeds[-1]}", args.out)


if __name__ == "__main__":
    main()
