"""Inpainting with HKD's closed-form trajectory against the teacher doing the same blending (docs/method.md §8).

Fills a region of COUNT Fashion-MNIST test images (fashion:test:0 ..) from the noise of held-out seeds:
HKD with K blend times (both blends, ``image`` and ``latent``) and the teacher blending along its Heun
steps (RePaint-style without resampling), at its standard 18 steps and at a cost comparable to HKD's.
Reports the masked-region RMSE against the real image, the model's own error over the known part before
the final paste, and the wall time per image (one CPU thread, batch COUNT, after a warm-up, the better of
two runs); the one-step HKD sample pasted into the known part is the no-blending baseline.

    python analyses/inpaint_compare.py [--hkd CKPT] [--count 64] [--threads 1]

Writes analyses/results/inpainting.json and figures/inpainting.{png,pdf} (--figures: another folder).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from koopscope.diffusion.config import HELD_OUT_SEED
from koopscope.io.atomic import write_json
from koopscope.io.meta import sha256

ROOT = Path(__file__).resolve().parent.parent
TIMES = (1, 2, 4, 8, 16)
TEACHER_STEPS = (5, 18)   # 5: 9 NFE, the network passes of HKD at K = 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hkd", type=Path, default=None, help="HKD checkpoint (default: the shipped model)")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="noise seed of the first image")
    ap.add_argument("--rows", type=int, default=6, help="rows of the figure")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "analyses/results/inpainting.json")
    ap.add_argument("--figures", type=Path, default=ROOT / "figures", help="folder of the figure")
    args = ap.parse_args()

    import numpy as np
    import torch

    from koopscope.diffusion.samplers import seeded_noise
    from koopscope.diffusion.teacher import load_teacher
    from koopscope.editing.images import read_images
    from koopscope.editing.inpaint import Inpainting, fill_errors, hkd_inpaint, teacher_inpaint
    from koopscope.editing.options import region_mask
    from koopscope.editing.plots import image_table
    from koopscope.hkd.sample import one_step
    from koopscope.hkd.task import load_hkd
    from koopscope.io.figures import save_figure
    from koopscope.models import default_checkpoint
    from koopscope.spectral.consistency import resolve_teacher

    torch.set_num_threads(args.threads)
    path = args.hkd or default_checkpoint()[0]
    model, meta = load_hkd(path)
    teacher = load_teacher(resolve_teacher(meta))[0]
    cfg = model.cfg
    shape = (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)
    x0 = torch.from_numpy(read_images("fashion:test:0", args.count, shape))
    seeds = range(args.seed, args.seed + args.count)
    noise = seeded_noise(seeds, shape)

    def timed(fn, *a):
        """fn(*a) and its best wall time per image over two runs (the machine is shared)."""
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            out = fn(*a)
            seconds.append(time.perf_counter() - start)
        return out, min(seconds) / args.count

    hkd_inpaint(model, x0[:4], torch.ones(shape[1:]), noise[:4], 1)   # warm-up: first calls allocate
    teacher_inpaint(teacher, x0[:4], torch.ones(shape[1:]), noise[:4], 2)
    one_step_x, one_step_seconds = timed(one_step, model, seeds)
    one_step_x = one_step_x.double()

    res = {"checkpoint": str(path), "checkpoint_sha256": sha256(path),
           "images": f"fashion:test:0..{args.count - 1}", "seeds": [seeds[0], seeds[-1]],
           "threads": args.threads, "regions": {}}
    q = shape[-1] // 4   # the central half of the image: box:8,8,24,24 at 32x32
    for spec in ("lower-left", f"box:{q},{q},{3 * q},{3 * q}"):
        mask = region_mask(spec, shape[1:])
        region = torch.from_numpy(mask)
        runs = {"hkd one-step, pasted (no blending)": (Inpainting(torch.lerp(x0, one_step_x, region), one_step_x),
                                                        one_step_seconds, {"network_passes": 1})}
        for k in TIMES:
            for blend in ("image", "latent"):
                out, sec = timed(hkd_inpaint, model, x0, region, noise, k, blend)
                runs[f"hkd K={k} {blend}"] = (out, sec, {"blend_times": k, "blend": blend, "network_passes": k + 1})
        for steps in TEACHER_STEPS:
            out, sec = timed(teacher_inpaint, teacher, x0, region, noise, steps)
            runs[f"teacher {steps} steps"] = (out, sec, {"steps": steps, "nfe": 2 * steps - 1})
        res["regions"][spec] = {name: {**info, "seconds_per_image": sec,
                                       **{k: v for k, v in fill_errors(out, x0, region).items()
                                          if k != "masked_rmse_per_image"}}
                                for name, (out, sec, info) in runs.items()}
        if spec == "lower-left":
            shown = (mask, runs)
    write_json(args.out, res)

    mask, runs = shown
    rows, r = slice(0, args.rows), res["regions"]["lower-left"]
    columns = [("original", x0[rows]), ("input", np.where(mask > 0, -0.5, x0[rows].numpy()))]
    for label, name in (("HKD, K = 8", "hkd K=8 image"), ("teacher, 18 steps", "teacher 18 steps")):
        columns.append((f"{label}\nRMSE {r[name]['masked_rmse']:.2f}, {1e3 * r[name]['seconds_per_image']:.0f} ms",
                        runs[name][0].x[rows]))
    labels = [f"fashion:test:{i}" for i in range(args.rows)]
    save_figure(image_table(columns, labels, mask, outlined=(1,)), args.figures / "inpainting.png")

    for spec, runs in res["regions"].items():
        print(f"region {spec} ({args.count} images): masked-region RMSE, known-part RMSE before the paste, "
              "ms per image")
        for name, v in runs.items():
            print(f"  {name:36s} {v['masked_rmse']:.4f}  {v['known_rmse_raw']:.4f}  "
                  f"{1e3 * v['seconds_per_image']:7.1f}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
