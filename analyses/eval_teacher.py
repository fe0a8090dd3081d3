"""Headline teacher evaluation: FID, KID, precision/recall at 35, 15 and 10 NFE, with the real-vs-real floor.

The teacher's Heun 18 (35 NFE), Heun 8 (15 NFE) and Euler 10 (10 NFE) samples (seeds SEED + i, the same
noise for every sampler) against COUNT Fashion-MNIST train images at the teacher's resolution, and the
train-vs-test floor at the same COUNT. Reference features are cached (KOOPSCOPE_CACHE); with
--trajectories, the 35-NFE set is the final states of a trajectory store of this teacher (Heun, 18
grid points, the same seeds) instead of being sampled again.

    python analyses/eval_teacher.py [--teacher runs/teacher-fashion/model.safetensors] [--count 5000]
                                    [--trajectories STORE] [--ref fashion:train] [--threads 1]

Inception runs at a few images/s on CPU: 5000 samples x 3 samplers plus 2 x 5000 reference images
the first time is about an hour or more. Writes analyses/results/eval_teacher.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLERS = (("heun", 18), ("heun", 8), ("euler", 10))   # 35, 15, 10 NFE
NAMES = [f"{solver}{steps}" for solver, steps in SAMPLERS]


def store_batches(path: Path, teacher_sha256: str, count: int, seed: int, batch: int):
    """Final states of a trajectory store as the Heun-18 samples of seeds seed..seed+count-1, and its NFE."""
    from koopscope.errors import KoopscopeError
    from koopscope.trajectories import TrajectoryStore

    store = TrajectoryStore(path)
    m = store.manifest
    problems = [f"{k} is {m[k]!r}, need {v!r}" for k, v in
                (("solver", "heun"), ("steps", 18), ("teacher_sha256", teacher_sha256)) if m[k] != v]
    if len(store) < count or store.seeds[:count].tolist() != list(range(seed, seed + count)):
        problems.append(f"its first {count} seeds are not {seed}..{seed + count - 1} (it holds {len(store)})")
    if problems:
        raise KoopscopeError(f"trajectory store {path} does not fit: {'; '.join(problems)}")

    return store.finals(count, batch), m["nfe_per_trajectory"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, default=ROOT / "runs" / "teacher-fashion" / "model.safetensors")
    ap.add_argument("--count", type=int, default=5000, help="samples per sampler, and reference images")
    ap.add_argument("--ref", default="fashion:train", help="DATASET[:SPLIT]; the floor uses its other split")
    ap.add_argument("--trajectories", type=Path, help="trajectory store to take the 35-NFE samples from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samplers", nargs="+", choices=NAMES, default=NAMES,
                    help="evaluate only these (rows merge into an existing --out of the same teacher and count, "
                         "so samplers can run in parallel processes)")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses" / "results" / "eval_teacher.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from koopscope.errors import KoopscopeError

    try:
        run(args)
    except KoopscopeError as e:
        sys.exit(f"error: {e}")


def run(args) -> None:
    from koopscope.io.atomic import write_json
    from koopscope.io.checkpoint import read_meta
    from koopscope.io.meta import sha256
    from koopscope.metrics import InceptionFeatures
    from koopscope.metrics.samples import evaluate_batches, evaluate_checkpoint, load_ref, real_floor

    t0 = time.perf_counter()
    size, digest = int(read_meta(args.teacher)["config"]["image_shape"][-1]), sha256(args.teacher)
    if args.trajectories:   # checked before the long parts
        stored, stored_nfe = store_batches(args.trajectories, digest, args.count, args.seed, args.batch)
    ext = InceptionFeatures()
    ref = load_ref(args.ref, args.count, size, ext, args.progress)
    floor = real_floor(args.ref, args.count, size, ext, args.progress)
    ref_seconds = time.perf_counter() - t0
    rows = []
    for solver, steps in SAMPLERS:
        if f"{solver}{steps}" not in args.samplers:
            continue
        t1 = time.perf_counter()
        if (solver, steps) == SAMPLERS[0] and args.trajectories:
            r = {**evaluate_batches(stored, args.count, ref, ext, args.progress), "nfe": stored_nfe,
                 "source": str(args.trajectories)}
        else:
            r = evaluate_checkpoint(args.teacher, args.count, ref, steps=steps, solver=solver, seed=args.seed,
                                    batch=args.batch, extractor=ext, progress=args.progress)
        del r["reference"]
        rows.append({**r, "name": f"{solver.capitalize()} {steps}", "solver": solver, "steps": steps,
                     "seconds": time.perf_counter() - t1})
        print(f"{rows[-1]['name']}: FID {r['fid']:.3f} ({rows[-1]['seconds']:.0f} s)", flush=True)
    rows = merged(args, digest, rows)
    res = {"teacher": str(args.teacher), "teacher_sha256": digest, "count": args.count, "seed": args.seed,
           "reference": ref["meta"],
           "floor": floor, "samplers": rows, "seconds": ref_seconds + sum(r["seconds"] for r in rows),
           "reference_seconds": ref_seconds, "threads": args.threads, "torch": torch.__version__,
           "inception": ext.id}
    print(f"\nteacher {args.teacher}: {args.count} samples each vs {args.ref} ({args.count} images, {size}px)")
    print(f"{'sampler':<14} {'NFE':>4} {'FID':>9} {'KID x 1e3':>16} {'precision':>9} {'recall':>7} {'seconds':>8}")
    for r in [*rows, {**floor, "name": "real vs real", "nfe": "-"}]:
        kid = f"{1e3 * r['kid_mean']:.3f} ± {1e3 * r['kid_std']:.3f}"
        print(f"{r['name']:<14} {r['nfe']:>4} {r['fid']:>9.3f} {kid:>16} {r['precision']:>9.4f} {r['recall']:>7.4f} "
              f"{r['seconds']:>8.0f}")
    print(f"evaluation took {res['seconds']:.0f} s of compute (reference and floor features {ref_seconds:.0f} s)")
    if args.count < 10_000:
        print(f"note: FID from {args.count} < 10000 samples is biased upward; read it against the floor")
    write_json(args.out, res)
    print(f"wrote {args.out}")


def merged(args, digest: str, rows: list[dict]) -> list[dict]:
    """Rows of this run plus those of other samplers already in --out for the same teacher (by its sha256, so a
    checkpoint replaced at the same path starts afresh), count and seed."""
    import json

    if args.out.exists():
        old = json.loads(args.out.read_text())
        if (old.get("teacher_sha256"), old.get("count"), old.get("seed")) == (digest, args.count, args.seed):
            mine = {r["name"] for r in rows}
            rows = [r for r in old["samplers"] if r["name"] not in mine] + rows
    order = [f"{solver.capitalize()} {steps}" for solver, steps in SAMPLERS]
    return sorted(rows, key=lambda r: order.index(r["name"]))


if __name__ == "__main__":
    main()
