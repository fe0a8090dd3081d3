"""HKD's closed-form trajectory beside the teacher's, from the same x_T (docs/method.md §6).

For COUNT held-out seeds, the teacher's Heun states on its Karras grid and HKD's decoded closed-form states
at the same times (sigma = 0 read as eps, where HKD's path ends at its one-step sample); every state shown
as c_in(sigma)·x·sigma_data (unit-scale noise near T, the image at the end). The RMSE per grid time of
c_in(sigma)·x (the quantity intermediate supervision trains; `koopscope consistency`'s fidelity) is pooled
over the seeds.

    python analyses/fig_trajectory.py [--hkd CKPT] [--count 64] [--rows 4] [--threads 1]

Writes analyses/results/trajectory.json and figures/trajectory_<name>.{png,pdf} (--figures: another folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from koopscope.diffusion.config import HELD_OUT_SEED, SIGMA_DATA
from koopscope.io.atomic import write_json
from koopscope.io.meta import sha256

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hkd", type=Path, default=None, help="HKD checkpoint (default: the shipped model)")
    ap.add_argument("--count", type=int, default=64, help="seeds the RMSE is pooled over")
    ap.add_argument("--rows", type=int, default=4, help="seeds shown (teacher row above HKD row)")
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="first seed (held out from training)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default=None, help="figure name suffix (default: from the checkpoint's path)")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses/results/trajectory.json")
    ap.add_argument("--figures", type=Path, default=ROOT / "figures", help="folder of the figure")
    args = ap.parse_args()

    import torch

    from koopscope.hkd.sample import latent_trajectory
    from koopscope.hkd.task import load_hkd
    from koopscope.io.figures import pyplot, save_figure
    from koopscope.models import default_checkpoint
    from koopscope.spectral.consistency import resolve_teacher, teacher_trajectories

    torch.set_num_threads(args.threads)
    path = args.hkd or default_checkpoint()[0]
    name = args.name or (path.stem if path.parent.name == "models" else path.parent.name).removeprefix("hkd-")
    model, meta = load_hkd(path)
    seeds = list(range(args.seed, args.seed + args.count))
    teacher, grid = teacher_trajectories(resolve_teacher(meta), seeds)           # (seed, time, C, H, W)
    hkd = latent_trajectory(model, seeds, grid.tolist())[1].transpose(0, 1)       # (seed, time, C, H, W)
    c_in = 1 / (grid.double() ** 2 + SIGMA_DATA**2).sqrt()
    sq = (hkd.double() - teacher.double()).pow(2).flatten(2).mean(2)              # (seed, time)
    rmse_image = sq.mean(0).sqrt()
    res = {"checkpoint": str(path), "checkpoint_sha256": sha256(path), "count": args.count,
           "seeds": [seeds[0], seeds[-1]], "sigmas": grid.tolist(),
           "rmse_normalised": (c_in * rmse_image).tolist(), "rmse_image": rmse_image.tolist(),
           "sample_rmse": float(rmse_image[-1])}
    write_json(args.out, res)

    plt = pyplot()
    rows = min(args.rows, args.count)
    cols = sorted(set(range(0, len(grid), 3)) | {len(grid) - 1})
    scale = SIGMA_DATA * c_in
    fig = plt.figure(figsize=(1.05 * len(cols) + 3.6, 2.2 * rows))
    sub = fig.add_gridspec(2 * rows, len(cols) + 3, wspace=0.05, hspace=0.08)
    for i in range(rows):
        for r, (label, states) in enumerate((("teacher", teacher), ("HKD", hkd))):
            for j, k in enumerate(cols):
                ax = fig.add_subplot(sub[2 * i + r, j])
                ax.imshow((states[i, k, 0] * scale[k]).clamp(-1, 1), cmap="gray", vmin=-1, vmax=1,
                          interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0 and r == 0:
                    ax.set_title(f"σ={grid[k]:.3g}", fontsize=7)
                if j == 0:
                    ax.set_ylabel(f"{label}\n{seeds[i]}", fontsize=7)
    ax = fig.add_subplot(sub[1:-1, len(cols) + 1:])
    ax.plot(grid[:-1], res["rmse_normalised"][:-1], marker="o", color="k")
    ax.set(xscale="log", xlabel="σ", ylabel="RMSE of c_in(σ)·x", title=f"pooled over {args.count} seeds")
    ax.invert_xaxis()
    fig.suptitle(f"{name}: HKD's decoded closed-form states vs the teacher's Heun states, same x_T", fontsize=10)
    wrote = save_figure(fig, args.figures / f"trajectory_{name}.png")
    print("sigma   rmse(c_in x)  rmse(x)")
    for s, a, b in zip(res["sigmas"], res["rmse_normalised"], res["rmse_image"]):
        print(f"{s:7.3g}  {a:12.4f}  {b:8.4f}")
    print("wrote", args.out, *wrote)


if __name__ == "__main__":
    main()
