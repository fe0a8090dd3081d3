"""Ship a trained HKD model or teacher inside the package, with its provenance beside it.

    python analyses/ship_model.py runs/hkd-fashion/model.safetensors [--run RUN] [--eval analyses/results/eval_hkd.json]
        [--consistency analyses/results/consistency_fashion.json]
    python analyses/ship_model.py runs/teacher-fashion-cont/model-step0014000.safetensors
        [--eval-teacher analyses/results/eval_teacher.json] [--fid-rows analyses/results/fid_vs_steps.json]
    python analyses/ship_model.py RUNS/teacher-fashion-mean13-18.safetensors \
        --eval-teacher analyses/results/eval_teacher-mean13-18.json
    python analyses/ship_model.py RUNS/hkd-fashion-v3/model.safetensors --models checkpoints --name hkd-fashion-v3 \
        --teacher checkpoints/teacher-fashion-step0003000.safetensors --eval analyses/results/eval_hkd_v3.json \
        --consistency analyses/results/consistency_fashion-v3.json

Copies the checkpoint (EMA weights only) to koopscope/models/hkd-<preset>.safetensors, with the
consistency summary (`koopscope consistency CKPT --out DIR`'s JSON) in its metadata, where
`koopscope spectrum` prints it, and writes hkd-<preset>.json: the commands that made it, its config,
the training data and its hash (from the teacher checkpoint), its lineage (every run it was warm-started
through, with steps, images and trajectory store), the last run's options and final losses, the
measured FID (from eval_hkd.py's results) and the consistency.

A teacher is copied byte for byte to koopscope/models/teacher-<preset>.safetensors (students and trajectory
stores name it by its sha256), and teacher-<preset>.json records its lineage (every run it was warm-started
through, with steps and images), the training data and its measured FID (eval_teacher.py's samplers and
fid_vs_steps.py's rows of this checkpoint).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from koopscope.hkd.config import HKDConfig, current_names
from koopscope.io.atomic import atomic_path, write_json
from koopscope.io.checkpoint import annotate
from koopscope.io.meta import images_seen, read_meta, sha256, warm_starts

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python analyses/ship_model.py " + shlex.join(sys.argv[1:])   # as called, recorded in the JSON


def final_losses(run: Path, step: int, last: int = 10) -> dict:
    """Mean of each loss term over the run's last `last` log lines up to `step` (the model's)."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r and r["step"] <= step][-last:]
    keys = [k for k in rows[-1] if k not in ("step", "lr", "images_per_s")]
    return {k: round(sum(r[k] for r in rows) / len(rows), 5) for k in keys}


def shown(path: Path) -> Path:
    """A path as the record shows it: relative to the checkout when inside it."""
    full = path.resolve()
    return full.relative_to(ROOT) if full.is_relative_to(ROOT) else path


def lineage(path: Path, digest: str, meta: dict, keys: tuple[str, ...] = ()) -> list[dict]:
    """The checkpoint (sha256 ``digest``) and each one it was warm-started from, nearest first: sha256, step, images
    and ``keys`` of each run's provenance. Read before a copy can replace an ancestor at the same path."""
    chain = [(digest, meta), *warm_starts(meta)]
    if chain[-1][1] is None:
        raise SystemExit(f"error: {path} was warm-started from a checkpoint (sha256 {chain[-1][0][:12]}) that "
                         "is gone or has changed since; its lineage cannot be recorded")
    return [{"sha256": d, **{k: m["provenance"].get(k) for k in
                             ("step", "images_seen", "git_commit", "init", "init_sha256", *keys)}} for d, m in chain]


def last_options(args) -> dict | None:
    """The training options of the checkpoint's own run (its run folder's options.json), if kept."""
    options = (args.run or args.model.parent) / "options.json"
    return json.loads(options.read_text())["train"] if options.is_file() else None


def train_command(meta: dict, teacher: Path, out: Path) -> str:
    """The `koopscope train hkd` call that reproduces the checkpoint's config and step count."""
    cfg, prov = current_names(meta["config"]), meta["provenance"]
    model, loss = HKDConfig.from_dict(cfg["model"]), cfg["loss"]
    flags = {"--trajectories": prov["trajectories"], "--teacher": teacher, "--init": cfg.get("init"),
             "--encoder-conditioning": model.encoder_conditioning, "--noise-estimate": model.noise_estimate,
             "--intermediate": loss["intermediate"], "--latent": loss.get("latent", 0.0),
             "--distance": loss["distance"], "--points": cfg["points"], "--steps": prov["step"], "--out": out}
    return " ".join([f"koopscope train hkd --preset {prov['preset']}",
                     *(f"{k} {v}" for k, v in flags.items() if v is not None)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="the run's model.safetensors (or a copy of it at some step)")
    ap.add_argument("--run", type=Path, default=None, help="the run folder (default: the model's folder)")
    ap.add_argument("--teacher", type=Path, default=ROOT / "koopscope/models/teacher-fashion.safetensors")
    ap.add_argument("--eval", type=Path, default=ROOT / "analyses/results/eval_hkd.json")
    ap.add_argument("--consistency", type=Path, default=ROOT / "analyses/results/consistency_fashion.json")
    ap.add_argument("--eval-teacher", type=Path, default=ROOT / "analyses/results/eval_teacher.json")
    ap.add_argument("--fid-rows", type=Path, default=ROOT / "analyses/results/fid_vs_steps.json")
    ap.add_argument("--models", type=Path, default=ROOT / "koopscope/models", help="where the package's models live")
    ap.add_argument("--name", default=None, help="file name in --models (default hkd-<preset> or teacher-<preset>); "
                    "a teacher already there keeps its file and gains the JSON")
    ap.add_argument("--note", default=None, help="anything else a user should know about how it was made")
    args = ap.parse_args()

    meta = read_meta(args.model)
    if meta["kind"] == "teacher":
        return ship_teacher(args, meta)
    teacher = read_meta(args.teacher)
    prov = meta["provenance"]
    if prov["teacher_sha256"] != sha256(args.teacher):
        raise SystemExit(f"error: {args.model} was distilled from another teacher than {args.teacher}")
    digest, ev = sha256(args.model), json.loads(args.eval.read_text())
    if ev.get("hkd_sha256") != digest:
        raise SystemExit(f"error: {args.eval} evaluates {ev['hkd']} at step {ev['hkd_step']}, not this model")
    cons = json.loads(args.consistency.read_text())
    if cons.get("checkpoint_sha256") != digest:
        raise SystemExit(f"error: {args.consistency} measures {cons.get('checkpoint')}, not this model")
    runs = lineage(args.model, digest, meta, ("trajectories", "trajectory_count"))
    cons = {k: cons[k] for k in ("consistent", "verdict", "min_explained", "threshold", "verdict_sigma", "count",
                                 "sigmas", "explained_from_T", "band_validity", "fidelity_mean", "one_step_mse",
                                 "one_step_mse_no_dynamics", "seeds", "trajectories") if k in cons}
    name = args.name or f"hkd-{prov['preset']}"
    dest = args.models / f"{name}.safetensors"
    annotate(args.model, dest, consistency=cons)
    tp = teacher["provenance"]
    write_json(dest.with_suffix(".json"), {
        "what": f"HKD one-step student, preset {prov['preset']}, distilled from "
                f"{shown(args.teacher)} on {prov['trajectory_count']} of its Heun "
                f"{prov['grid_steps']}-step trajectories",
        "commands": ["bash analyses/fashion_pipeline.sh",
                     COMMAND],
        "train_command": train_command(meta, shown(args.teacher), args.run or args.model.parent),
        "steps": prov["step"], "images_seen": images_seen(meta), "git_commit": prov["git_commit"],
        "lineage": runs, "train": last_options(args),
        "config": meta["config"],
        "data": {k: tp[k] for k in ("dataset", "split", "data_hash", "data_count")},
        "teacher_sha256": prov["teacher_sha256"], "sha256": sha256(dest), "source_sha256": digest,
        "final_losses": final_losses(args.run or args.model.parent, prov["step"]),
        "fid": {"count": ev["count"], "reference": ev["reference"], "hkd_seeds": ev["hkd_seeds"],
                "hkd_vs_data": ev["hkd_vs_data"]["fid"], "teacher_35nfe_vs_data": ev["teacher_vs_data"]["fid"],
                "ratio": ev["fid_ratio_hkd_over_teacher"],
                "hkd_vs_teacher_samples": (ev["hkd_vs_teacher"] or {}).get("fid"),
                "kid_hkd_vs_data": ev["hkd_vs_data"]["kid_mean"]},
        "consistency": cons,
        **({"note": args.note} if args.note else {}),
    })
    print(f"wrote {dest} and {dest.with_suffix('.json')}")


def ship_teacher(args, meta: dict) -> None:
    digest, prov = sha256(args.model), meta["provenance"]
    runs = lineage(args.model, digest, meta)
    ev = json.loads(args.eval_teacher.read_text())
    if ev.get("teacher_sha256") != digest:
        raise SystemExit(f"error: {args.eval_teacher} evaluates {ev['teacher']}, not this teacher")
    rows = [r for r in json.loads(args.fid_rows.read_text())["rows"] if r["sha256"] == digest]
    dest = args.models / f"{args.name or 'teacher-' + prov['preset']}.safetensors"
    if not (dest.exists() and dest.samefile(args.model)):
        with atomic_path(dest) as tmp:
            shutil.copyfile(args.model, tmp)
    keep = ("name", "nfe", "fid", "kid_mean", "kid_std", "precision", "recall")
    write_json(dest.with_suffix(".json"), {
        "what": f"EDM teacher, preset {prov['preset']}, EMA weights; "
                f"{images_seen(meta):,} training images in "
                f"{len(runs)} run(s), each warm-started from the one before",
        "commands": ["bash analyses/fashion_pipeline.sh", COMMAND],
        "lineage": runs, "train": last_options(args),
        "config": meta["config"],
        "data": {k: prov[k] for k in ("dataset", "split", "data_hash", "data_count")},
        "sha256": digest,
        "fid": {"count": ev["count"], "seed": ev["seed"], "reference": ev["reference"],
                "samplers": [{k: r[k] for k in keep} for r in ev["samplers"]],
                "floor": {k: ev["floor"][k] for k in keep[2:]}},
        "fid_vs_steps": [{k: r[k] for k in ("count", "seeds", "fid", "kid_mean", "precision", "recall")}
                         for r in rows],
        **({"note": args.note} if args.note else {}),
    })
    print(f"wrote {dest} and {dest.with_suffix('.json')}")


if __name__ == "__main__":
    main()
