"""Benchmark the spectral toolkit (koopscope.spectral).

(a) Spectrum at the paper's CIFAR-10 size (the cifar10 preset's U-Net levels: 256 channels at
    32x32, 16x16, 8x8 + an 8x8 bottleneck). The checkpoint holds the cifar10 HKD config and
    random generators only (what `koopscope spectrum` reads; the 50M network weights are never
    loaded). Timed in fresh processes with peak RSS: `spectrum(ckpt)` (read, sha256,
    eigenvalues, sort, bands, xarray assembly; target < 2 s) and `summary` (the terminal
    table); also the whole `koopscope spectrum CKPT` command against the bare import time of
    what it loads (xarray, rich; never torch: the generators are read with numpy).
    And a dense 1569x1569 generator (Koopman-CFM's MNIST size) through `spectrum_from_dense`.
(b) Band reconstructions of 64 samples at 16 Karras times (3 isolated bands) on an untrained
    fashion-size HKD, against the same-size untrained teacher producing the trajectory states
    at the same 16 times by Heun integration (30 NFE); ratio = bands / teacher.

    python analyses/bench_spectrum.py [--count 64] [--times 16] [--repeats 3] [--threads 1]

Writes analyses/results/bench_spectrum.json and figures/bench_spectrum.{png,pdf}.
"""

from __future__ import annotations

import argparse
import json
import os
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
IMPORTS = "import xarray, rich.table, koopscope.spectral.spectrum, koopscope.cli.main"  # the command's, no torch


def randomise(koopman, seed: int = 0):
    """Random generators in place: alpha ~ N(0, 0.3^2), beta ~ N(0, 1) per block and location."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for level in koopman.levels:
            level.alpha.normal_(0, 0.3, generator=g)
            level.beta.normal_(0, 1.0, generator=g)
    return koopman


def cifar_generators(path: Path) -> Path:
    """An HKD checkpoint of the cifar10 preset's config holding random generators only."""
    from koopscope.hkd.koopman import HierarchicalKoopman
    from koopscope.hkd.model import HKDConfig
    from koopscope.io.checkpoint import provenance, save_checkpoint, with_prefix
    from koopscope.train.presets import TEACHER_PRESETS

    cfg = HKDConfig(unet=TEACHER_PRESETS["cifar10"].unet)
    koopman = randomise(HierarchicalKoopman(cfg.unet.level_shapes()))
    return save_checkpoint(path, with_prefix(koopman.state_dict(), "ema.koopman"), "hkd", {"model": cfg.to_dict()},
                           provenance(note="random generators only, for benchmarks"))


def child(what: str, arg: str, threads: int) -> None:
    """Run in a fresh process: time one spectral call, print seconds and RSS (KiB) as JSON."""
    import numpy as np

    from koopscope.spectral import spectrum, spectrum_from_dense, summary

    torch.set_num_threads(threads)
    summary(spectrum_from_dense(np.eye(4)))  # warm-up: imports and first calls belong to the baseline
    if what == "dense":
        fn, arg = spectrum_from_dense, np.random.default_rng(0).standard_normal((1569, 1569)) / 1569 ** 0.5
    elif what == "summary":
        fn, arg = summary, spectrum(arg)
    else:
        fn = spectrum
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = fn(arg)
    seconds = time.perf_counter() - t0
    modes = int(out.valid.sum()) if hasattr(out, "valid") else None
    print(json.dumps({"seconds": seconds, "rss_before_kib": before, "modes": modes,
                      "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def in_child(what: str, arg: str, threads: int, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "--child", what, arg, str(threads)], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return {"runs": runs, "seconds": statistics.median(r["seconds"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_kib"] for r in runs) / 1024,
            "rss_before_mib": max(r["rss_before_kib"] for r in runs) / 1024, "modes": runs[0]["modes"]}


# Runs argv[1:] and prints its peak RSS (KiB): a fresh parent, so no other child's peak counts.
PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def wall(cmd: list[str], threads: int, repeats: int) -> tuple[float, float]:
    """Median wall seconds of a command in a fresh process, and its largest peak RSS in MiB."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    runs, peaks = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=env)
        runs.append(time.perf_counter() - t0)
        out = subprocess.run([sys.executable, "-c", PEAK, *cmd], check=True, capture_output=True, text=True,
                             cwd=ROOT, env=env)
        peaks.append(int(out.stdout) / 1024)
    return statistics.median(runs), max(peaks)


def cifar_spectrum(threads: int, repeats: int, dense: bool) -> dict:
    with tempfile.TemporaryDirectory() as d:
        ckpt = str(cifar_generators(Path(d) / "hkd-cifar10-generators.safetensors"))
        res = {k: in_child(k, ckpt, threads, repeats) for k in ("spectrum", "summary")}
        cli = [str(Path(sys.executable).with_name("koopscope")), "spectrum", ckpt]
        res["command_s"], res["command_peak_rss_mib"] = wall(cli, threads, repeats)
        res["imports_s"], _ = wall([sys.executable, "-c", IMPORTS], threads, repeats)
    if dense:
        res["dense_1569"] = in_child("dense", "-", threads, 1)
    return res


def reconstructions(count: int, times: int, repeats: int) -> dict:
    from koopscope.diffusion.samplers import heun, karras_sigmas, seeded_noise
    from koopscope.diffusion.teacher import build_teacher
    from koopscope.hkd.model import HKD, HKDConfig
    from koopscope.spectral import band_reconstructions
    from koopscope.train.presets import TEACHER_PRESETS

    unet = TEACHER_PRESETS["fashion"].unet
    torch.manual_seed(0)
    teacher = build_teacher(unet).eval().requires_grad_(False)
    hkd = HKD(HKDConfig(unet=unet)).eval().requires_grad_(False)
    randomise(hkd.koopman)
    sigmas = karras_sigmas(times, final_zero=False)
    seeds = range(count)
    shape = (unet.img_channels, unet.resolution, unet.resolution)
    states = []

    def run_teacher():
        states.clear()
        with torch.no_grad():
            return heun(teacher, seeded_noise(seeds, shape) * sigmas[0], sigmas, lambda i, s, x: states.append(x))[1]

    def run_bands():
        return band_reconstructions(hkd, seeds, sigmas.tolist(), batch=count)

    nfe = run_teacher()  # warm-up both
    ds = run_bands()
    assert len(states) == times and ds.image.shape[:3] == (3, times, count)
    teach, bands = [], []
    for _ in range(repeats):  # interleaved, so background load hits both alike
        t0 = time.perf_counter()
        run_teacher()
        teach.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_bands()
        bands.append(time.perf_counter() - t0)
    t, b = statistics.median(teach), statistics.median(bands)
    params = sum(p.numel() for p in teacher.parameters())
    return {"count": count, "times": times, "bands": 3, "teacher_nfe": nfe, "teacher_params": params,
            "hkd_decodes_per_sample": 3 * times, "teacher_s": teach, "bands_s": bands, "teacher_median_s": t,
            "bands_median_s": b, "ratio_bands_over_teacher": b / t,
            "ratio_per_decoded_state": (b / (3 * times)) / (t / times)}


def figure(res: dict, path: Path) -> None:
    from koopscope.io.figures import pyplot, save_figure

    plt = pyplot()

    a, r = res["spectrum_cifar10"], res["reconstructions_fashion"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = ["spectrum", "summary"]
    ax1.bar(["spectrum\n(ckpt)", "summary", "command", "imports\nalone"],
            [a["spectrum"]["seconds"], a["summary"]["seconds"], a["command_s"], a["imports_s"]],
            color=["C0", "C2", "0.5", "0.8"])
    ax1.axhline(2.0, color="r", ls="--", lw=1, label="target 2 s")
    for i, k in enumerate(labels):
        extra = a[k]["peak_rss_mib"] - a[k]["rss_before_mib"]
        ax1.text(i, a[k]["seconds"], f"+{extra:.0f} MiB", ha="center", va="bottom", fontsize=8)
    ax1.set_ylabel("seconds")
    ax1.set_title(f"spectrum at CIFAR-10 size: {a['spectrum']['modes']:,} modes\n"
                  f"peak RSS {a['spectrum']['peak_rss_mib']:.0f} MiB", fontsize=9)
    ax1.legend(fontsize=8, loc="upper left")
    ax2.bar([f"teacher Heun\n{r['teacher_nfe']} NFE", f"HKD 3 bands\n{r['hkd_decodes_per_sample']} decodes"],
            [r["teacher_median_s"], r["bands_median_s"]], color=["0.6", "C1"])
    ax2.set_ylabel("seconds")
    ax2.set_title(f"{r['count']} samples x {r['times']} times (fashion size): ratio {r['ratio_bands_over_teacher']:.2f}"
                  f"\n({r['ratio_per_decoded_state']:.2f} per decoded state)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=64, help="samples for the band reconstructions")
    ap.add_argument("--times", type=int, default=16, help="Karras grid times")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-dense", action="store_true", help="skip the 1569x1569 dense generator")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses" / "results" / "bench_spectrum.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "figures" / "bench_spectrum.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = {"threads": args.threads, "torch": torch.__version__, "cpus": os.cpu_count(),
           "load_average": os.getloadavg()[0],
           "spectrum_cifar10": cifar_spectrum(args.threads, args.repeats, not args.no_dense),
           "reconstructions_fashion": reconstructions(args.count, args.times, args.repeats)}
    a = res["spectrum_cifar10"]
    for k in ("spectrum", "summary"):
        v = a[k]
        print(f"CIFAR-10 size {k}: {v['seconds']:.3f} s (median of {args.repeats} fresh processes), peak RSS "
              f"{v['peak_rss_mib']:.0f} MiB ({v['rss_before_mib']:.0f} MiB before the call)")
    print(f"`koopscope spectrum CKPT` end to end: {a['command_s']:.2f} s, peak RSS {a['command_peak_rss_mib']:.0f} "
          f"MiB; {a['imports_s']:.2f} s of it is starting Python and importing xarray/rich (not torch)")
    if "dense_1569" in a:
        d = a["dense_1569"]
        print(f"dense 1569x1569 generator: {d['seconds']:.2f} s, peak RSS {d['peak_rss_mib']:.0f} MiB")
    r = res["reconstructions_fashion"]
    print(f"band reconstructions, {r['count']} samples x {r['times']} times x 3 bands: {r['bands_median_s']:.2f} s; "
          f"teacher Heun ({r['teacher_nfe']} NFE, {r['teacher_params'] / 1e6:.1f}M params): "
          f"{r['teacher_median_s']:.2f} s; ratio {r['ratio_bands_over_teacher']:.2f} "
          f"({r['ratio_per_decoded_state']:.2f} per decoded state: 3 band states per teacher state)")
    write_json(args.out, res)
    figure(res, args.figure)
    print(f"wrote {args.out} and {args.figure.with_suffix('')}.{{png,pdf}}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
