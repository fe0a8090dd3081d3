"""Does an HKD student generalise beyond the teacher trajectories it was distilled on?

    python analyses/generalisation.py RUN/model-step*.safetensors --train STORE --heldout HELDOUT [--count 128]
    python analyses/generalisation.py --plot        # the figure from the saved rows only

The student is fitted to a finite store of teacher trajectories (seeds 0..N-1). For each checkpoint this
measures, with the consistency measurement (``koopscope consistency``), the one-step sample's MSE to the
teacher's sample and the mean RMSE of the decoded closed-form states along the trajectory, on the first COUNT
trajectories of the training store (seeds that every size of it holds) and on COUNT trajectories of a held-out
store of the same teacher (other seeds, e.g. ``koopscope trajectories TEACHER --out HELDOUT --count 256
--seed-offset 3000000``). A held-out error far above the training error means the student memorises its store:
more trajectories, not more steps, is what it lacks. Rows accumulate in analyses/results/generalisation.json,
keyed by the checkpoint's sha256, the two stores and the count; figures/generalisation.{png,pdf} draws both
errors against training images seen (a warm start's own included), a colour per run (a checkpoint's folder,
or its file name outside a run folder), training seeds solid, held-out seeds dashed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def errors(model, meta: dict, store, count: int) -> dict:
    """One-step MSE and mean trajectory RMSE of ``model`` on the first ``count`` trajectories of ``store``."""
    from koopscope.spectral.consistency import measure, store_trajectories

    states, sigmas = store_trajectories(store, meta, count)
    ds = measure(model, states, sigmas)
    return {"one_step_mse": float(ds.attrs["one_step_mse"]), "fidelity_mean": float(ds.fidelity.mean())}


def score(path: Path, digest: str, train, heldout, count: int) -> dict:
    from koopscope.generators import load_model
    from koopscope.io.meta import images_seen

    model, meta = load_model(path, "hkd")
    prov = meta["provenance"]
    measured = {"train": errors(model, meta, train, count), "heldout": errors(model, meta, heldout, count)}
    seeds = {name: [int(s.seeds[0]), int(s.seeds[count - 1])] for name, s in (("train", train), ("heldout", heldout))}
    return {"checkpoint": str(path), "sha256": digest, "step": prov.get("step", 0), "images_seen": images_seen(meta),
            "trajectory_count": prov.get("trajectory_count"), "count": count,
            "train_store": str(train.path), "heldout_store": str(heldout.path), "seeds": seeds, **measured}


def run_of(row: dict) -> str:
    """The run a row's checkpoint came from: its folder for a run's model*.safetensors, else the file's name."""
    path = Path(row["checkpoint"])
    return path.parent.name if path.name.startswith("model") else path.stem


def plot(rows: list[dict], stem: Path) -> None:
    from koopscope.io.figures import count_ticks, pyplot, save_figure

    plt = pyplot()
    runs = sorted({run_of(r) for r in rows}, key=lambda n: min(r["images_seen"] for r in rows if run_of(r) == n))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, key, name in zip(axes, ("one_step_mse", "fidelity_mean"),
                             ("one-step sample MSE to the teacher's", "mean RMSE along the trajectory")):
        for i, run in enumerate(runs):   # a colour per run (tab20 past ten); training seeds solid, held-out dashed
            colour = f"C{i}" if len(runs) <= 10 else plt.get_cmap("tab20")(i % 20)
            mine = [r for r in rows if run_of(r) == run]
            for split, style in (("train", "o-"), ("heldout", "s--")):
                line = sorted((r["images_seen"], r[split][key]) for r in mine)
                ax.plot(*zip(*line), style, color=colour, fillstyle="none", markersize=4,
                        label=f"{run} ({mine[0]['trajectory_count']} trajectories)" if split == "train" else None)
        ax.set(xlabel="training images seen", title=name, ylim=(0, None))
        count_ticks(ax.xaxis)
    axes[0].plot([], [], "ko-", fillstyle="none", label="training seeds")
    axes[0].plot([], [], "ks--", fillstyle="none", label="held-out seeds")
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(1.1, -0.18), ncol=3, frameon=False)
    save_figure(fig, stem)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="*")
    ap.add_argument("--train", type=Path, help="the trajectory store the checkpoints were distilled on")
    ap.add_argument("--heldout", type=Path, help="a store of the same teacher on other seeds")
    ap.add_argument("--count", type=int, default=128, help="trajectories measured in each store")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", action="store_true", help="only redraw the figure from the saved rows")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses/results/generalisation.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "figures/generalisation")
    args = ap.parse_args()
    from koopscope.io.results import append, has_row, rows, script_args_error

    if error := script_args_error(args.checkpoints, args.plot, count=(args.count, 1)):
        fail(error)
    if args.checkpoints and not (args.train and args.heldout):
        fail("--train and --heldout name the stores to measure on")

    from koopscope.errors import KoopscopeError
    from koopscope.io.meta import sha256

    if args.checkpoints:
        import torch

        from koopscope.trajectories.loader import TrajectoryStore

        torch.set_num_threads(args.threads)
        try:
            train, heldout = TrajectoryStore(args.train), TrajectoryStore(args.heldout)
        except KoopscopeError as e:
            fail(f"{e}")
        if set(heldout.seeds.tolist()) & set(train.seeds.tolist()):
            fail(f"{args.heldout} shares seeds with {args.train}: it is not held out")
        for path in args.checkpoints:
            digest = sha256(path)
            if has_row(args.out, {"sha256": digest, "train_store": str(train.path),
                                  "heldout_store": str(heldout.path), "count": args.count}):
                print(f"already measured: {path}", flush=True)
                continue
            try:
                row = score(path, digest, train, heldout, args.count)
            except KoopscopeError as e:
                fail(f"{e}")
            append(args.out, row)
            t, h = row["train"], row["heldout"]
            print(f"step {row['step']:>6} ({row['images_seen']:,} images): one-step MSE train {t['one_step_mse']:.4f} "
                  f"held-out {h['one_step_mse']:.4f} ({h['one_step_mse'] / t['one_step_mse']:.2f}x); trajectory "
                  f"RMSE {t['fidelity_mean']:.3f} / {h['fidelity_mean']:.3f}", flush=True)
    saved = rows(args.out)
    if not saved:
        fail(f"no rows in {args.out} to plot")
    plot(saved, args.figure)


if __name__ == "__main__":
    main()
