"""The paper's comparison (Table 1 and its ablation), measured on one teacher: every one-step method distilled
from the same teacher and trajectory store with the same budget, every row scored by the same FID code on the
same held-out seeds.

    python analyses/comparison.py --trajectories STORE --teacher CKPT [--preset fashion] [--ref DATASET:SPLIT]
        [--runs DIR] [--steps 2000] [--milestones 500,1000,2000] [--only kd cd ...] [--count 5000]
        [--curve-count 2000] [--threads 1] [--report | --speeds]

Rows: the teacher's samplers (from --teacher-rows, eval_teacher.json: the same FID code, count and reference),
KD, CD at 1 and 2 NFE, HKD with koopscope's default objective, and the paper's HKD ablations (paper objective:
all on; no hierarchy; Koopman only; neither). Each method trains in RUNS/<name> to --steps (resumable across
sessions; finished milestones are not retrained): at each milestone its EMA model is kept as
model-step<N>.safetensors and scored with --curve-count samples (the FID-vs-training-images curve); at --steps
it is scored with --count samples, its sampling speed measured (images/s, batch 64, one thread) and, for
Koopman rows, its consistency (koopscope.spectral.consistency on 64 held-out teacher trajectories).
--speeds times every trained row again, round by round in one process, so that their images/s compare as
measured side by side (rows scored in different sessions met different loads). Two processes can take disjoint
--only sets (one core each): rows merge into the results file under a lock.
figures/comparison.md and figures/comparison_curve.{png,pdf} are rebuilt from the file every time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from koopscope.diffusion.config import HELD_OUT_SEED
from koopscope.io.results import merge

ROOT = Path(__file__).resolve().parent.parent
FID_SEED = 1_000_000  # first held-out seed of every distilled row (the HKD evaluations use the same)
# run name: (method, HKD switches, row label, table group)
RUNS = {
    "kd": ("kd", {}, "KD (Luhman & Luhman)", "distillation"),
    "cd": ("cd", {}, "CD (Song et al.)", "distillation"),
    "hkd": ("hkd", {}, "HKD, koopscope objective", "ours"),
    "hkd-paper": ("hkd", {"latent": 0.0, "intermediate": 0.0}, "HKD, paper objective (all on)", "ablation"),
    "hkd-no-hierarchy": ("hkd", {"latent": 0.0, "intermediate": 0.0, "hierarchy": False},
                         "no hierarchy (bottleneck only)", "ablation"),
    "hkd-koopman-only": ("hkd", {"latent": 0.0, "intermediate": 0.0, "consistency": False},
                         "Koopman only (no trajectory consistency)", "ablation"),
    "hkd-neither": ("hkd", {"latent": 0.0, "intermediate": 0.0, "consistency": False, "koopman": False},
                    "neither (no Koopman, no consistency)", "ablation"),
}
CD_STEPS = (1, 2)
# The paper's own numbers (CIFAR-10, 50k samples, each method with its own teacher), quoted, not measured.
PAPER_CIFAR10 = {"EDM Heun 18": 1.97, "EDM Heun 8": 5.62, "DDIM (Euler) 10": 13.36, "kd": 9.36, "cd-1": 3.55,
                 "hkd-paper": 3.30, "hkd-no-hierarchy": 4.78, "hkd-koopman-only": 5.57, "hkd-neither": 5.72}
TEACHER_LABELS = {("heun", 18): "EDM Heun 18", ("heun", 8): "EDM Heun 8", ("euler", 10): "DDIM (Euler) 10"}


def task_for(args, name: str):
    """(task, TrainConfig) of a run, built with torch seeded by the run's seed."""
    from koopscope.pipeline import distill_task, hkd_task

    method, switches, _, _ = RUNS[name]
    if method == "hkd":
        return lambda: hkd_task(args.preset, args.trajectories, args.teacher, **switches)
    return lambda: distill_task(method, args.preset, args.trajectories, args.teacher)


def train_to(args, name: str, steps: int) -> Path:
    """Train RUNS/<name> to ``steps`` (resuming) and keep its EMA model as model-step<steps>.safetensors."""
    from koopscope.pipeline import resumable
    from koopscope.train.loop import train
    from koopscope.train.presets import hkd_preset

    run = args.runs / name
    snapshot = run / f"model-step{steps:07d}.safetensors"
    if snapshot.exists():
        return snapshot
    seed = hkd_preset(args.preset).train.seed
    torch.manual_seed(seed)
    task, cfg = task_for(args, name)()
    cfg = replace(cfg, steps=steps, threads=args.threads, grid=0, sample_every=0)
    model = train(task, cfg, run, resume=resumable(run), preset=args.preset, progress=args.progress)
    shutil.copyfile(model, snapshot)
    return snapshot


def train_seconds(run: Path, steps: int) -> float:
    """Training wall time up to ``steps``, from the log's images/s per logged interval."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    opts = json.loads((run / "options.json").read_text())["train"]
    prev, total = 0, 0.0
    for r in rows:
        if r["step"] > steps:
            break
        total += (r["step"] - prev) * opts["batch"] / r["images_per_s"]
        prev = r["step"]
    return total


def _rates(gens: dict, rounds: int) -> dict:
    """images/s at batch 64 of each generator after a warm-up: one timed batch per generator per round, round by
    round (so that they share the machine's load); the best round of each."""
    for gen in gens.values():
        gen(range(8))
    best = dict.fromkeys(gens, float("inf"))
    for k in range(rounds):
        for key, gen in gens.items():
            t0 = time.perf_counter()
            gen(range(64 * k, 64 * (k + 1)), batch=64)
            best[key] = min(best[key], time.perf_counter() - t0)
    return {key: 64 / t for key, t in best.items()}


def images_per_s(path: Path, steps: int | None) -> float:
    """Sampling throughput at batch 64 on this process's threads: the best of three timed batches."""
    from koopscope.generators import load_generator

    return _rates({path: load_generator(path, steps=steps)}, 3)[path]


def speeds(rows: dict, rounds: int = 5) -> dict:
    """images/s of every distilled row (its model at the budget) measured again side by side in this process."""
    from koopscope.generators import load_generator

    gens = {key: load_generator(Path(r["run"]) / f"model-step{r['steps']:07d}.safetensors",
                                steps=r["nfe"] if r["nfe"] > 1 else None)
            for key, r in rows.items() if "run" in r}
    return {key: round(v, 1) for key, v in _rates(gens, rounds).items()}


def score(args, path: Path, count: int, steps: int | None = None) -> dict:
    from koopscope.metrics.samples import evaluate_checkpoint

    r = evaluate_checkpoint(path, count, reference=args.ref, steps=steps, seed=FID_SEED, batch=250,
                            progress=args.progress)
    return {k: r[k] for k in ("fid", "kid_mean", "kid_std", "precision", "recall", "count", "nfe")}


def consistency(args, path: Path) -> dict:
    from koopscope.generators import load_model
    from koopscope.spectral.consistency import measure, resolve_teacher, summary, teacher_trajectories

    model, meta = load_model(path, "hkd")
    states, sigmas = teacher_trajectories(resolve_teacher(meta, args.teacher),
                                          range(HELD_OUT_SEED, HELD_OUT_SEED + 64))
    s = summary(measure(model, states, sigmas))
    return {k: s[k] for k in ("consistent", "min_explained", "one_step_mse", "one_step_mse_no_dynamics")}


def curve_point(args, name: str, step: int, path: Path) -> dict:
    """Score a run's model at ``step`` with --curve-count samples unless the results hold it (merged at once,
    so a stopped session keeps its points); returns the run's curve so far."""
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    curve = results.get("curves", {}).get(name, {})
    if str(step) not in curve:
        curve = {**curve, str(step): score(args, path, args.curve_count)["fid"]}
        results = merge(args.results, {}, "curves", {name: curve})
    return results["curves"][name]


def run_rows(args, name: str) -> dict:
    """Train one run through its milestones and score it; returns its rows (CD gives one per NFE)."""
    method, _, label, group = RUNS[name]
    for m in [m for m in args.milestones if m < args.steps] + [args.steps]:
        path = train_to(args, name, m)
        if m < args.steps:
            curve_point(args, name, m, path)
    curve = curve_point(args, name, args.steps, path)
    seconds = train_seconds(args.runs / name, args.steps)
    cfg = json.loads((args.runs / name / "options.json").read_text())["train"]
    common = {"run": str(args.runs / name), "group": group, "steps": args.steps, "batch": cfg["batch"],
              "train_images": args.steps * cfg["batch"], "train_seconds": round(seconds, 1)}
    rows = {}
    for steps in (CD_STEPS if method == "cd" else (None,)):
        key = f"{name}-{steps}" if method == "cd" else name
        row = {**common, "label": f"{label}, {steps} NFE" if steps else label, **score(args, path, args.count, steps),
               "images_per_s": round(images_per_s(path, steps), 1)}
        if steps in (None, 1):
            row["curve"] = curve
        if method == "hkd":
            row["consistency"] = consistency(args, path)
        rows[key] = row
    return rows


def teacher_rows(path: Path) -> dict:
    """The teacher's samplers as scored by analyses/eval_teacher.py (same FID code, count and reference)."""
    rec = json.loads(path.read_text())
    source = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    rows = {}
    for r in rec["samplers"]:
        label = TEACHER_LABELS.get((r["solver"], r["steps"]), r["name"])
        rows[label] = {"label": label, "group": "multi-step", "source": str(source),
                       **{k: r[k] for k in ("fid", "kid_mean", "kid_std", "precision", "recall", "count", "nfe")}}
    return rows


def table(results: dict) -> str:
    floor = results.get("floor")
    lines = [f"# One-step distillation compared on one teacher ({results['preset']})", "",
             f"Every distilled row: {results['steps']} steps of batch {results['batch']} on the same "
             f"{results['trajectory_count']} teacher trajectories; FID/KID/P/R of {results['count']} samples "
             f"(held-out seeds from {FID_SEED}) against {results['count']} {results['reference']} images"
             + (f"; real-vs-real floor at that count {floor:.2f}" if floor else "") + ". "
             "Teacher rows from analyses/results/eval_teacher.json (seeds 0..count-1). "
             "CIFAR-10 column: the paper's numbers, quoted (each method with its own teacher and compute).", "",
             "| group | method | NFE | FID | KID x1e3 | precision | recall | images/s | train images | train time "
             "| explained (min) | CIFAR-10 FID (paper, quoted) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = ["multi-step", "distillation", "ours", "ablation"]
    for key, r in sorted(results["rows"].items(), key=lambda kv: (order.index(kv[1]["group"]), kv[0])):
        c = r.get("consistency")
        explained = f"{c['min_explained']:.3f}" if c else ""
        seen = f"{r['train_images']:,}" if "train_images" in r else ""
        wall = f"{r['train_seconds'] / 3600:.1f} h" if "train_seconds" in r else ""
        speed = f"{r['images_per_s']:.0f}" if "images_per_s" in r else ""
        paper = PAPER_CIFAR10.get(key, "")
        lines.append(f"| {r['group']} | {r['label']} | {r['nfe']} | {r['fid']:.2f} | {1e3 * r['kid_mean']:.1f} "
                     f"| {r['precision']:.3f} | {r['recall']:.3f} | {speed} | {seen} | {wall} | {explained} "
                     f"| {paper} |")
    missing = [n for n in RUNS if n not in results["rows"] and f"{n}-1" not in results["rows"]]
    if missing:
        lines += ["", f"Not yet trained to the budget: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def plot(results: dict, stem: Path) -> None:
    from koopscope.io.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for _, r in sorted(results["rows"].items()):
        if "curve" in r:
            curve = sorted((int(s), fid) for s, fid in r["curve"].items())  # JSON keys are strings
            ax.plot([s * r["batch"] for s, _ in curve], [fid for _, fid in curve], marker="o", label=r["label"])
    ax.set(xlabel="training images seen", ylabel=f"FID ({results['curve_count']} samples)",
           title="FID along training, same teacher and trajectories")
    ax.legend(fontsize=7)
    save_figure(fig, stem)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=Path, required=True)
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--preset", default="fashion")
    ap.add_argument("--runs", type=Path, default=Path.home() / "koopscope-runs" / "comparison")
    ap.add_argument("--steps", type=int, default=2000, help="the training budget of every distilled method")
    ap.add_argument("--milestones", default="500,1000", help="extra curve points (steps), comma-separated")
    ap.add_argument("--only", nargs="*", default=[], choices=list(RUNS), help="runs to train and score")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--curve-count", type=int, default=2000)
    ap.add_argument("--ref", default="fashion:train")
    ap.add_argument("--teacher-rows", type=Path, default=ROOT / "analyses/results/eval_teacher.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", type=Path, default=ROOT / "analyses/results/comparison.json")
    ap.add_argument("--table", type=Path, default=ROOT / "figures/comparison.md")
    ap.add_argument("--figure", type=Path, default=ROOT / "figures/comparison_curve")
    ap.add_argument("--report", action="store_true", help="only rebuild the table and figure from the results")
    ap.add_argument("--speeds", action="store_true",
                    help="measure every trained row's images/s again, side by side in this process, and rebuild")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    args.milestones = sorted({int(m) for m in args.milestones.split(",") if m})
    torch.set_num_threads(args.threads)

    from koopscope.io.atomic import atomic_path
    from koopscope.trajectories import TrajectoryStore

    if args.speeds:
        rows = json.loads(args.results.read_text())["rows"]
        measured = speeds(rows)
        merge(args.results, {}, "rows", {key: {**rows[key], "images_per_s": v} for key, v in measured.items()})
        print("\n".join(f"{key}: {v} images/s" for key, v in measured.items()), flush=True)
    elif not args.report:
        from koopscope.io.meta import sha256

        teacher_rec = json.loads(args.teacher_rows.read_text())
        if teacher_rec.get("teacher_sha256") != sha256(args.teacher):
            print(f"error: {args.teacher_rows} scores another teacher than {args.teacher}; pass --teacher-rows with "
                  "that teacher's eval_teacher.py results", file=sys.stderr)
            sys.exit(2)
        header = {"preset": args.preset, "steps": args.steps, "batch": None, "count": args.count,
                  "curve_count": args.curve_count, "reference": args.ref, "teacher": str(args.teacher),
                  "trajectories": str(args.trajectories), "trajectory_count": len(TrajectoryStore(args.trajectories)),
                  "fid_seeds": [FID_SEED, FID_SEED + args.count - 1], "floor": teacher_rec.get("floor", {}).get("fid")}
        from koopscope.train.presets import hkd_preset

        header["batch"] = hkd_preset(args.preset).train.batch
        merge(args.results, header, "rows", teacher_rows(args.teacher_rows))
        for name in args.only:
            t0 = time.perf_counter()
            rows = run_rows(args, name)
            merge(args.results, header, "rows", rows)
            for key, r in rows.items():
                print(f"{key}: FID {r['fid']:.2f} at {r['nfe']} NFE, {r['images_per_s']} images/s "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    results = json.loads(args.results.read_text())
    with atomic_path(args.table) as tmp:
        tmp.write_text(table(results))
    plot(results, args.figure)
    print(table(results))


if __name__ == "__main__":
    main()
