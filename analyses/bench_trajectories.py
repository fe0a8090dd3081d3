"""Benchmark trajectory generation (koopscope.trajectories.generate).

(a) Sampler overhead: generating a store vs the raw batched forward passes of the same network
    for the same number of evaluations; overhead = 1 - raw / generation (target < 10 %).
(b) Streaming: peak RSS of generating two store sizes 4x apart, each in a fresh process
    (target: within 10 %).

    python analyses/bench_trajectories.py [TEACHER_CKPT] [--count 64] [--sizes 64 256] [--threads 1]

Without a checkpoint it benchmarks an untrained network of the `fashion` preset's size.
Writes analyses/results/bench_trajectories.json and figures/bench_trajectories.{png,pdf}.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from koopscope.io.atomic import write_json

ROOT = Path(__file__).resolve().parent.parent


def untrained_fashion_teacher(path: Path) -> Path:
    from koopscope.diffusion.teacher import save_untrained
    from koopscope.train.presets import TEACHER_PRESETS

    p = TEACHER_PRESETS["fashion"]
    torch.manual_seed(0)
    return save_untrained(path, p.unet, p.sampler_steps)


def raw_forward(net, shape, sigmas, count: int, batch: int, nfe: int) -> float:
    """Seconds for the network evaluations generation makes: nfe per batch, same batch sizes."""
    grid = sigmas[:-1].float()
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, count, batch):
            x = torch.randn(min(batch, count - s), *shape)
            for k in range(nfe):
                net(x, grid[k % len(grid)])
    return time.perf_counter() - t0


def throughput(ckpt: Path, count: int, batch: int, repeats: int, tmp: Path) -> dict:
    from koopscope.diffusion.samplers import karras_sigmas
    from koopscope.diffusion.teacher import load_teacher
    from koopscope.trajectories import generate

    net, meta = load_teacher(ckpt)
    steps, shape = meta["config"]["sampler_steps"], tuple(meta["config"]["image_shape"])
    nfe, sigmas = 2 * steps - 1, karras_sigmas(steps)
    generate(ckpt, tmp / "warmup", batch, batch=batch, progress=False)
    gen, raw = [], []
    for r in range(repeats):   # interleaved, so background load hits both alike
        raw.append(raw_forward(net, shape, sigmas, count, batch, nfe))
        t0 = time.perf_counter()
        generate(ckpt, tmp / f"gen{r}", count, batch=batch, progress=False)
        gen.append(time.perf_counter() - t0)
    g, f = statistics.median(gen), statistics.median(raw)
    return {"count": count, "batch": batch, "steps": steps, "nfe_per_trajectory": nfe, "image_shape": list(shape),
            "generation_s": gen, "raw_forward_s": raw, "trajectories_per_s": count / g,
            "evaluations_per_s": count * nfe / g, "raw_evaluations_per_s": count * nfe / f,
            "sampler_overhead": 1 - f / g}


def child(ckpt: str, out: str, count: int, batch: int, shard_size: int, threads: int) -> None:
    """Run in a fresh process: generate, print RSS before and peak RSS (KiB) as JSON."""
    import psutil

    from koopscope.diffusion.teacher import load_teacher
    from koopscope.trajectories import generate

    torch.set_num_threads(threads)
    load_teacher(ckpt)   # import and load costs belong to the baseline
    before = psutil.Process().memory_info().rss // 1024
    t0 = time.perf_counter()
    generate(ckpt, out, count, batch=batch, shard_size=shard_size, progress=False)
    store_bytes = sum(f.stat().st_size for f in Path(out).glob("shard-*"))
    print(json.dumps({"count": count, "rss_before_kib": before, "seconds": time.perf_counter() - t0,
                      "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "store_bytes": store_bytes}))


def peak_ram(ckpt: Path, sizes: list[int], batch: int, shard_size: int, threads: int, tmp: Path) -> dict:
    runs = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--child", str(ckpt), str(tmp / f"ram{n}"), str(n), str(batch),
               str(shard_size), str(threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    peaks = [r["peak_rss_kib"] for r in runs]
    return {"batch": batch, "shard_size": shard_size, "runs": runs, "peak_ratio": max(peaks) / min(peaks),
            "store_ratio": runs[-1]["store_bytes"] / runs[0]["store_bytes"]}


def figure(res: dict, path: Path) -> None:
    from koopscope.io.figures import pyplot, save_figure

    plt = pyplot()

    a, b = res["throughput"], res["peak_ram"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2))
    ax1.bar(["raw forward", "generation"], [a["raw_evaluations_per_s"], a["evaluations_per_s"]],
            color=["0.6", "C0"])
    ax1.set_ylabel("network evaluations / s")
    ax1.set_title(f"sampler overhead {100 * a['sampler_overhead']:.1f} %")
    runs = b["runs"]
    labels = [f"{r['count']} traj\n{r['store_bytes'] / 2**20:.1f} MiB store" for r in runs]
    ax2.bar(labels, [r["peak_rss_kib"] / 1024 for r in runs], color="C1", label="peak RSS")
    ax2.bar(labels, [r["rss_before_kib"] / 1024 for r in runs], color="0.8", label="before generation")
    ax2.set_ylabel("MiB")
    ax2.set_title(f"peak RSS ratio {b['peak_ratio']:.3f}")
    ax2.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", nargs="?", type=Path, help="teacher checkpoint (default: untrained fashion-size)")
    ap.add_argument("--count", type=int, default=64, help="trajectories for the throughput run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs=2, default=[64, 256], help="store sizes for the RAM runs")
    ap.add_argument("--shard-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "analyses" / "results" / "bench_trajectories.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "figures" / "bench_trajectories.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt = args.teacher or untrained_fashion_teacher(tmp / "teacher.safetensors")
        res = {"teacher": str(args.teacher or "untrained fashion preset"), "threads": args.threads,
               "torch": torch.__version__,
               "throughput": throughput(ckpt, args.count, args.batch, args.repeats, tmp),
               "peak_ram": peak_ram(ckpt, args.sizes, args.batch, args.shard_size, args.threads, tmp)}
    a, b = res["throughput"], res["peak_ram"]
    print(f"generation: {a['trajectories_per_s']:.2f} trajectories/s, {a['evaluations_per_s']:.1f} evaluations/s "
          f"(raw forward {a['raw_evaluations_per_s']:.1f}/s); sampler overhead {100 * a['sampler_overhead']:.1f} %")
    for r in b["runs"]:
        print(f"peak RSS, {r['count']} trajectories ({r['store_bytes'] / 2**20:.1f} MiB store): "
              f"{r['peak_rss_kib'] / 1024:.1f} MiB (before generation {r['rss_before_kib'] / 1024:.1f} MiB)")
    print(f"peak RSS ratio {b['peak_ratio']:.3f} for a {b['store_ratio']:.1f}x larger store")
    write_json(args.out, res)
    figure(res, args.figure)
    print(f"wrote {args.out} and {args.figure.with_suffix('')}.{{png,pdf}}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        c = sys.argv[2:]
        child(c[0], c[1], int(c[2]), int(c[3]), int(c[4]), int(c[5]))
    else:
        main()
