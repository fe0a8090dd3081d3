"""HKD one-step quality against its teacher: FID/KID/P-R of HKD samples vs the teacher's 35-NFE samples,
both against the dataset, and trajectory fidelity of the decoded closed-form states.

    python analyses/eval_hkd.py --hkd runs/hkd-fashion/model.safetensors \
        --trajectories runs/traj-fashion --count 5000 [--ref fashion:train] [--threads 1]

The teacher's samples are the final states of the trajectory store (Heun, seeds 0..COUNT-1); their
Inception features are cached beside the data references.
HKD samples use held-out seeds (--seed, default 1_000_000): none of them was seen in training.
The headline is FID(HKD vs data) / FID(teacher vs data); FID(HKD vs teacher samples) is the
distillation gap. With --teacher-from analyses/results/eval_teacher.json the teacher's row is read from
that file (the same 35-NFE samples, reference and count; 12 CPU-minutes of Inception saved) and the
distillation gap is skipped. Writes analyses/results/eval_hkd.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def teacher_reference(store, count: int, ext, batch: int, progress: bool) -> dict:
    """Inception features of the store's first `count` final states, cached like the data references."""
    from koopscope.metrics import cache_dir
    from koopscope.metrics.reference import cached_features

    m = store.manifest
    meta = {"name": "teacher-samples", "teacher_sha256": m["teacher_sha256"], "solver": m["solver"],
            "steps": m["steps"], "seeds": [int(store.seeds[0]), int(store.seeds[count - 1])], "count": count,
            "net": ext.id}
    path = cache_dir() / f"teacher-samples-{m['teacher_sha256'][:12]}-{m['solver']}{m['steps']}-n{count}-{ext.id}.npz"

    def compute():
        return ext(torch.cat(list(store.finals(count, batch))), progress=progress)

    return cached_features(path, meta, compute)


def recorded_teacher(path: Path, store, count: int, ref: str) -> dict:
    """The 35-NFE teacher row of eval_teacher.json, if it scored this store's samples at this count and reference."""
    rec = json.loads(path.read_text())
    row = next((r for r in rec["samplers"] if r["solver"] == store.manifest["solver"]
                and r["steps"] == store.manifest["steps"]), None)
    name, split = ref.split(":")
    if (row is None or row["count"] != count or rec["reference"]["name"] != name
            or rec["reference"]["split"] != split or rec["reference"]["count"] != count):
        raise SystemExit(f"error: {path} has no teacher row for {store.manifest['solver']} "
                         f"{store.manifest['steps']} steps at count {count} against {ref}")
    return {**{k: row[k] for k in ("fid", "kid_mean", "kid_std", "precision", "recall", "count")},
            "source": str(path)}


def hkd_samples(model, count: int, seed: int, batch: int):
    from koopscope.hkd.sample import one_step

    for i in range(0, count, batch):
        yield one_step(model, range(seed + i, seed + min(i + batch, count)), batch=batch).clamp(-1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hkd", type=Path, required=True)
    ap.add_argument("--trajectories", type=Path, required=True, help="the teacher's trajectory store")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--ref", default="fashion:train")
    ap.add_argument("--seed", type=int, default=1_000_000, help="first HKD seed (held out)")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fidelity", type=int, default=256, help="trajectories for the fidelity curve")
    ap.add_argument("--teacher-from", type=Path, default=None, help="eval_teacher.json to take the teacher's row from")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses" / "results" / "eval_hkd.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from koopscope.hkd.dynamics import dynamics_share, eigen_spread, trajectory_fidelity
    from koopscope.hkd.task import load_hkd
    from koopscope.io.atomic import write_json
    from koopscope.io.meta import sha256
    from koopscope.metrics import InceptionFeatures, evaluate
    from koopscope.metrics.samples import load_ref
    from koopscope.trajectories import TrajectoryStore

    t0 = time.perf_counter()
    model, meta = load_hkd(args.hkd)
    store = TrajectoryStore(args.trajectories)
    count = min(args.count, len(store))
    ext = InceptionFeatures()
    size = store.image_shape[-1]
    data_ref = load_ref(args.ref, count, size, ext, args.progress)

    hkd_feats = ext(torch.cat(list(hkd_samples(model, count, args.seed, args.batch))), progress=args.progress)
    hkd_vs_data = evaluate(hkd_feats, data_ref)
    if args.teacher_from:
        teacher_vs_data, hkd_vs_teacher = recorded_teacher(args.teacher_from, store, count, args.ref), None
    else:
        teacher_ref = teacher_reference(store, count, ext, args.batch, args.progress)
        teacher_vs_data = evaluate(teacher_ref["features"], data_ref)
        hkd_vs_teacher = evaluate(hkd_feats, teacher_ref)

    result = {
        "hkd": str(args.hkd), "hkd_step": meta["provenance"].get("step"), "hkd_sha256": sha256(args.hkd),
        "trajectories": str(args.trajectories),
        "count": count, "hkd_seeds": [args.seed, args.seed + count - 1], "reference": args.ref,
        "teacher_vs_data": teacher_vs_data, "hkd_vs_data": hkd_vs_data, "hkd_vs_teacher": hkd_vs_teacher,
        "fid_ratio_hkd_over_teacher": hkd_vs_data["fid"] / teacher_vs_data["fid"],
        "dynamics_share": dynamics_share(model, store, count=min(args.fidelity, len(store))),
        "eigen_spread": eigen_spread(model),
        "trajectory_fidelity": trajectory_fidelity(model, store, count=min(args.fidelity, len(store))),
        "seconds": time.perf_counter() - t0,
    }
    write_json(args.out, json.loads(json.dumps(result, default=float)))
    gap = f"{hkd_vs_teacher['fid']:.2f}" if hkd_vs_teacher else "not measured"
    print(f"count {count}: FID teacher/data {teacher_vs_data['fid']:.2f}, HKD/data {hkd_vs_data['fid']:.2f} "
          f"(ratio {result['fid_ratio_hkd_over_teacher']:.2f}), HKD/teacher {gap}; "
          f"KID HKD/data {hkd_vs_data['kid_mean']:.4f}; {result['seconds']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
