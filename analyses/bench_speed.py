"""Benchmark sampling speed: teacher at 35 / 15 / 10 NFE against one-step HKD, on one batch size.

(a) Images per second and NFE of the teacher's Heun 18 (35 NFE, the baseline), Heun 8 (15 NFE) and
    Euler 10 (10 NFE) samplers and of each HKD checkpoint's one step; the headline is the speedup
    over Heun 18.
(b) HKD overhead: one_step over one encoder + decoder pass, decode(encode(x_T)), on the same seeds
    (both draw the seeded noise; the difference is the Koopman propagation); target <= 1.05. The two
    take a quarter second each and differ by a few percent, less than the jitter of one run on a
    shared machine, so they are timed --overhead-repeats times, alternating, and the ratio is that of
    the medians (the ratio of the best times is saved beside it).

Runs are interleaved (so background load hits all alike) after one warm-up each; sampler times are
the best of --repeats (timeit's convention), all raw times are saved.

    python analyses/bench_speed.py --teacher T.safetensors [--hkd H.safetensors ...] [--batch 64]
                                   [--repeats 3] [--overhead-repeats 21] [--threads 1]

Writes analyses/results/bench_speed.json and figures/bench_speed.{png,pdf}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from koopscope.io.atomic import write_json

ROOT = Path(__file__).resolve().parent.parent
TEACHER_SAMPLERS = (("heun", 18), ("heun", 8), ("euler", 10))   # 35, 15, 10 NFE; the first is the baseline
TARGET = 1.05


def teacher_runs(path: Path, seeds: list[int]) -> list[dict]:
    from koopscope.diffusion.samplers import sample
    from koopscope.diffusion.teacher import load_teacher

    net, meta = load_teacher(path)
    shape = tuple(meta["config"]["image_shape"])
    return [{"name": f"teacher {solver.capitalize()} {steps}", "model": str(path), "solver": solver, "steps": steps,
             "fn": lambda solver=solver, steps=steps: sample(net, seeds, shape, steps=steps, solver=solver)[1]}
            for solver, steps in TEACHER_SAMPLERS]   # fn returns the NFE


def hkd_runs(path: Path, seeds: list[int]) -> tuple[dict, dict]:
    """One-step sampling and the bare encoder + decoder pass on the same seeds."""
    from koopscope.diffusion.samplers import seeded_noise
    from koopscope.hkd.sample import one_step
    from koopscope.hkd.task import load_hkd

    model, _ = load_hkd(path)
    cfg = model.cfg
    label = path.parent.name if path.stem == "model" else path.stem   # the run folder, or a shipped file
    shape = (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)

    @torch.no_grad()
    def encdec() -> None:
        x_T = seeded_noise(seeds, shape) * cfg.sigma_max
        model.decode(model.encode(x_T, cfg.sigma_max), cfg.sigma_min)

    sampler = {"name": f"HKD one step ({label})", "model": str(path), "solver": "one_step", "steps": 1,
               "nfe": 1, "fn": lambda: one_step(model, seeds, batch=len(seeds))}
    return sampler, {"name": f"HKD encoder+decoder ({label})", "model": str(path), "fn": encdec}


def measure(runs: list[dict], repeats: int) -> None:
    """Warm up, then time every run `repeats` times, interleaved; fills 'seconds', 'best_s', 'median_s'
    (and the teacher's 'nfe', which its warm-up returns)."""
    for r in runs:
        nfe, r["seconds"] = r["fn"](), []
        if isinstance(nfe, int):
            r["nfe"] = nfe
    for _ in range(repeats):
        for r in runs:
            t0 = time.perf_counter()
            r["fn"]()
            r["seconds"].append(time.perf_counter() - t0)
    for r in runs:
        r["best_s"], r["median_s"] = min(r["seconds"]), statistics.median(r["seconds"])


def figure(res: dict, path: Path) -> None:
    from koopscope.io.figures import pyplot, save_figure

    plt = pyplot()

    rows, over = res["samplers"], res["hkd_overhead"]
    fig, axes = plt.subplots(1, 2 if over else 1, figsize=(9 if over else 5.5, 3.4), squeeze=False)
    ax = axes[0, 0]
    labels = [r["name"].removeprefix("teacher ").replace(" (", "\n(") + f"\n{r['nfe']} NFE" for r in rows]
    bars = ax.bar(labels, [r["images_per_s"] for r in rows], color=["0.5"] * 3 + ["C0"] * (len(rows) - 3))
    for b, r in zip(bars, rows):
        ax.annotate(f"{r['speedup']:.1f}x", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                    va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("images / s")
    ax.set_title(f"batch {res['batch']}, {res['threads']} thread(s); speedup vs Heun 18", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    if over:
        ax = axes[0, 1]
        for k, o in enumerate(over):
            ax.bar([2 * k, 2 * k + 1], [o["encdec_s"], o["one_step_s"]], color=["0.7", "C0"])
            ax.annotate(f"{o['ratio']:.3f}", (2 * k + 1, o["one_step_s"]), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(2 * len(over)), ["enc+dec", "one step"] * len(over))
        ax.set_ylabel("seconds per batch (median)")
        ax.set_title(f"HKD one step / encoder+decoder (target <= {TARGET})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint")
    ap.add_argument("--hkd", type=Path, action="append", default=[], help="one-step HKD checkpoint (repeatable)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--overhead-repeats", type=int, default=21, help="timings of one step vs encoder+decoder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "analyses" / "results" / "bench_speed.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "figures" / "bench_speed.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.batch))
    samplers, pairs = teacher_runs(args.teacher, seeds), []
    for path in args.hkd:
        s, e = hkd_runs(path, seeds)
        samplers.append(s)
        pairs.append((dict(s), e))
    measure(samplers, args.repeats)
    for pair in pairs:
        measure(list(pair), args.overhead_repeats)
    base = samplers[0]["best_s"]
    for r in [*samplers, *(r for pair in pairs for r in pair)]:
        r.pop("fn")
    for r in samplers:
        r.update(images_per_s=args.batch / r["best_s"], speedup=base / r["best_s"])
    over = [{"model": s["model"], "one_step_s": s["median_s"], "encdec_s": e["median_s"],
             "one_step_all_s": s["seconds"], "encdec_all_s": e["seconds"], "ratio": s["median_s"] / e["median_s"],
             "ratio_of_best": s["best_s"] / e["best_s"], "target": TARGET,
             "meets_target": s["median_s"] / e["median_s"] <= TARGET} for s, e in pairs]
    res = {"teacher": str(args.teacher), "hkd": [str(p) for p in args.hkd], "batch": args.batch,
           "repeats": args.repeats, "overhead_repeats": args.overhead_repeats, "threads": args.threads,
           "cpus": os.cpu_count(), "torch": torch.__version__,
           "timing": "samplers: best of repeats, interleaved, after one warm-up; overhead: ratio of medians",
           "samplers": samplers, "hkd_overhead": over}
    print(f"batch {args.batch}, {args.threads} thread(s), best of {args.repeats}")
    print(f"{'sampler':<40} {'NFE':>4} {'s/batch':>9} {'images/s':>10} {'speedup':>8}")
    for r in samplers:
        print(f"{r['name']:<40} {r['nfe']:>4} {r['best_s']:>9.4f} {r['images_per_s']:>10.1f} {r['speedup']:>7.1f}x")
    for o in over:
        print(f"HKD one step / encoder+decoder, medians of {args.overhead_repeats}: {o['one_step_s']:.4f} / "
              f"{o['encdec_s']:.4f} s = {o['ratio']:.3f} (best times: {o['ratio_of_best']:.3f}; target <= {TARGET}: "
              f"{'met' if o['meets_target'] else 'NOT met'}) [{o['model']}]")
    write_json(args.out, res)
    figure(res, args.figure)
    print(f"wrote {args.out} and {args.figure.with_suffix('')}.{{png,pdf}}")


if __name__ == "__main__":
    main()
