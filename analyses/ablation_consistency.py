"""Which HKD objective makes the latents follow the generators, at what cost in FID?

Short HKD runs from the same teacher and trajectory store, one per setting below (the rest from the
preset), all started from the teacher's weights or all from one trained student (--init: which objective,
applied to a trained model, makes it consistent, at what cost), each measured on held-out teacher
trajectories with koopscope.spectral.consistency (explained share per level and time, per-band validity,
decoded fidelity, one-step MSE with A as trained and A = 0) and scored by FID of one-step samples on
held-out seeds against the data:

    python analyses/ablation_consistency.py --trajectories STORE [--teacher CKPT] [--preset fashion]
        [--init STUDENT] [--steps 300] [--heldout 64] [--fid 2000] [--only NAME ...] [--out-dir DIR]

Runs resume where they stopped; finished runs are not retrained. Each run's numbers are merged into the
results file as it finishes (so two processes can take disjoint --only sets, one core each); the table
and figures/ablation_consistency.{png,pdf} are rebuilt from the file every time (--report: only that).
The default is chosen by the rule in RULE.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from koopscope.diffusion.config import HELD_OUT_SEED
from koopscope.io.results import merge

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {   # name: (encoder_time, intermediate weight, latent weight, noise estimate)
    "old-default": ("blind", 1.0, 0.0, "energy"),
    "haar": ("blind", 1.0, 0.0, "haar"),
    "haar-lat1": ("blind", 1.0, 1.0, "haar"),
    "haar-lat10": ("blind", 1.0, 10.0, "haar"),
    "haar-lat1-nomid": ("blind", 0.0, 1.0, "haar"),
    "sigma-lat1": ("sigma", 1.0, 1.0, "haar"),
}
RULE = ("best FID among the settings whose explained share is >= 0.8 at every level and grid time with "
        "sigma <= 40; if none reaches it, the frontier point with the largest minimum explained share whose "
        "FID is within 10% of the best")
FID_SEED = 1_000_000
INIT = "init"   # the --init student itself, before any fine-tuning (the control)


def setting(name: str, path: Path) -> dict:
    """The objective a row was trained with (for the init row: read from its checkpoint)."""
    if name != INIT:
        return dict(zip(("encoder_time", "intermediate", "latent", "noise_estimate"), SETTINGS[name]))
    from koopscope.hkd.config import HKDConfig
    from koopscope.io.meta import read_meta

    meta = read_meta(path)
    model, loss = HKDConfig.from_dict(meta["config"]["model"]), meta["config"]["loss"]
    return {"encoder_time": model.encoder_conditioning, "intermediate": loss["intermediate"],
            "latent": loss.get("latent", 0.0), "noise_estimate": model.noise_estimate}


def train_run(args, name: str, store) -> Path:
    """Train (or finish) one setting; returns its model.safetensors."""
    from koopscope.io.checkpoint import read_meta
    from koopscope.pipeline import hkd_task, resumable
    from koopscope.train.loop import train
    from koopscope.train.presets import hkd_preset

    run = args.out_dir / name
    ckpt = run / "checkpoint.safetensors"
    if ckpt.exists() and read_meta(ckpt)["state"]["step"] >= args.steps:
        return run / "model.safetensors"
    et, mid, lat, noise = SETTINGS[name]
    torch.manual_seed(hkd_preset(args.preset).train.seed)
    task, cfg = hkd_task(args.preset, store, args.teacher, encoder_conditioning=et, intermediate=mid, latent=lat,
                         noise_estimate=noise, init=args.init)
    cfg = replace(cfg, steps=args.steps, threads=args.threads, grid=16)
    return train(task, cfg, run, resume=resumable(run), preset=args.preset, progress=args.progress)


def heldout(args) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher trajectories for the held-out seeds, integrated once and kept beside the runs."""
    from koopscope.spectral.consistency import teacher_trajectories

    path = args.out_dir / f"heldout-{HELD_OUT_SEED}-n{args.heldout}.npz"
    if path.exists():
        z = np.load(path)
        return torch.from_numpy(z["states"]), torch.from_numpy(z["sigmas"])
    states, sigmas = teacher_trajectories(args.teacher, range(HELD_OUT_SEED, HELD_OUT_SEED + args.heldout))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, states=states.numpy(), sigmas=sigmas.numpy())
    return states, sigmas


@torch.no_grad()
def evaluate_run(path: Path, states, sigmas, fid_count: int, ref) -> dict:
    from koopscope.hkd.dynamics import eigen_spread
    from koopscope.hkd.sample import one_step
    from koopscope.hkd.task import load_hkd
    from koopscope.metrics import evaluate
    from koopscope.spectral.consistency import measure, summary

    model, meta = load_hkd(path)
    ds = measure(model, states, sigmas)
    s = summary(ds)
    from_t = ds.explained.isel(source=0)
    out = {"step": meta["state"]["step"], "min_explained": s["min_explained"], "consistent": s["consistent"],
           "sigmas": s["sigmas"], "explained_from_T": s["explained_from_T"],
           "explained_overall_from_T": [float(v) for v in ds.explained_overall.isel(source=0).values[1:]],
           "min_explained_per_level": [float(from_t.sel(level=lv).where(from_t.time <= 40).min())
                                       for lv in ds.level.values],
           "band_validity": s["band_validity"], "fidelity_mean": s["fidelity_mean"],
           "one_step_mse": s["one_step_mse"], "one_step_mse_no_dynamics": s["one_step_mse_no_dynamics"],
           "re_median": eigen_spread(model)["overall"]["median"]}
    if fid_count:
        scores = evaluate(one_step(model, range(FID_SEED, FID_SEED + fid_count)).clamp(-1, 1), ref)
        out["fid"] = {k: scores[k] for k in ("fid", "kid_mean", "precision", "recall", "count")}
    return out


def choose(results: dict) -> str:
    runs = {n: r for n, r in results["runs"].items() if "fid" in r}
    ok = [n for n, r in runs.items() if r["consistent"]]
    if ok:
        return min(ok, key=lambda n: runs[n]["fid"]["fid"])
    best = min(r["fid"]["fid"] for r in runs.values())
    near = [n for n, r in runs.items() if r["fid"]["fid"] <= 1.1 * best]
    return max(near, key=lambda n: runs[n]["min_explained"])


def table(results: dict) -> str:
    head = (f"| setting | encoder | mid | latent | noise est. | min explained (sigma<=40) | explained at "
            f"sigma 3.3 / 0.06 | fidelity | MSE | MSE A=0 | A=0 ratio | FID@{results['fid_count']} |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results["runs"].items():
        et, mid, lat, noise = (r["setting"][k] for k in ("encoder_time", "intermediate", "latent", "noise_estimate"))
        sig = np.array(r["sigmas"])
        at = [r["explained_overall_from_T"][int(np.argmin(abs(sig[1:] - s)))] for s in (3.26, 0.06)]
        fid = f"{r['fid']['fid']:.1f}" if "fid" in r else "-"
        rows.append(f"| {name} | {et} | {mid:g} | {lat:g} | {noise} | {r['min_explained']:.3f} | "
                    f"{at[0]:.3f} / {at[1]:.3f} | {r['fidelity_mean']:.3f} | {r['one_step_mse']:.4f} | "
                    f"{r['one_step_mse_no_dynamics']:.3f} | "
                    f"{r['one_step_mse_no_dynamics'] / r['one_step_mse']:.1f}x | {fid} |")
    return "\n".join(rows)


def plot(results: dict, stem: Path) -> None:
    from koopscope.io.figures import pyplot, save_figure

    plt = pyplot()
    runs = results["runs"]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.4))
    for name, r in runs.items():
        sig = r["sigmas"][1:]
        ax[0].plot(sig, r["explained_overall_from_T"], marker=".", label=name)
        if "fid" in r:
            ax[1].scatter(r["min_explained"], r["fid"]["fid"])
            ax[1].annotate(name, (r["min_explained"], r["fid"]["fid"]), fontsize=8, xytext=(4, 3),
                           textcoords="offset points")
    ax[0].axhline(0.8, color="k", ls="--", lw=0.8)
    ax[0].set(xscale="log", xlabel="sigma", ylabel="explained share from T (all levels)",
              title="do the encoder's latents follow the generators?")
    ax[0].invert_xaxis()
    ax[0].legend(fontsize=7)
    ax[1].axvline(0.8, color="k", ls="--", lw=0.8)
    ax[1].set(xlabel="min explained share (every level, sigma <= 40)", ylabel=f"FID ({results['fid_count']} samples)",
              title="the FID vs consistency frontier")
    start = "the teacher" if results["init"] == "teacher" else Path(results["init"]).name
    fig.suptitle(f"HKD objective ablation, preset {results['preset']}, {results['steps']} steps from {start}")
    fig.tight_layout()
    save_figure(fig, stem, dpi=130)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="fashion")
    ap.add_argument("--teacher", type=Path, default=ROOT / "koopscope/models/teacher-fashion.safetensors")
    ap.add_argument("--trajectories", type=Path, default=ROOT / "runs/traj-fashion")
    ap.add_argument("--init", type=Path, default=None, help="start every run from this student (default: teacher)")
    ap.add_argument("--steps", type=int, default=300, help="training steps per run")
    ap.add_argument("--heldout", type=int, default=64, help="held-out teacher trajectories to measure on")
    ap.add_argument("--fid", type=int, default=2000, help="FID of this many one-step samples per run (0: none)")
    ap.add_argument("--ref", default="fashion:train", help="FID reference (dataset:split)")
    ap.add_argument("--ref-count", type=int, default=5000)
    ap.add_argument("--only", nargs="*", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--with-init", action="store_true", help="also measure the --init student itself (the control)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "runs/ablation-consistency")
    ap.add_argument("--results", type=Path, default=ROOT / "analyses/results/ablation_consistency.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "figures/ablation_consistency")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="only rebuild the table and figure from the results")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if not args.report:
        from koopscope.metrics.samples import load_ref

        states, sigmas = heldout(args)
        ref = load_ref(args.ref, args.ref_count, states.shape[-1], None, args.progress) if args.fid else None
        header = {"preset": args.preset, "steps": args.steps, "teacher": str(args.teacher),
                  "init": str(args.init) if args.init else "teacher",
                  "trajectories": str(args.trajectories),
                  "heldout_seeds": [HELD_OUT_SEED, HELD_OUT_SEED + args.heldout],
                  "fid_count": args.fid, "fid_seeds": [FID_SEED, FID_SEED + args.fid], "reference": args.ref,
                  "reference_count": args.ref_count, "rule": RULE,
                  "settings": {n: dict(zip(("encoder_time", "intermediate", "latent", "noise_estimate"), v))
                               for n, v in SETTINGS.items()}}
        todo = ([INIT] if args.init and args.with_init else []) + args.only
        for name in todo:
            t0 = time.perf_counter()
            path = args.init if name == INIT else train_run(args, name, args.trajectories)
            run = {"run": str(path.parent), "setting": setting(name, path),
                   **evaluate_run(path, states, sigmas, args.fid, ref), "seconds": round(time.perf_counter() - t0, 1)}
            merge(args.results, header, "runs", {name: run})
            print(f"{name}: min explained {run['min_explained']:.3f}, FID {run.get('fid', {}).get('fid', '-')} "
                  f"({run['seconds']} s)", flush=True)
    results = json.loads(args.results.read_text())
    results["runs"] = {n: results["runs"][n] for n in [INIT, *SETTINGS] if n in results["runs"]}
    if any("fid" in r for r in results["runs"].values()):
        results["chosen"] = choose(results)
        merge(args.results, {"chosen": results["chosen"]})
    plot(results, args.figure)
    print(table(results))
    if "chosen" in results:
        print(f"chosen by the rule ({RULE}): {results['chosen']}")


if __name__ == "__main__":
    main()
