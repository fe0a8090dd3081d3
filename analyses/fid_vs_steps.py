"""FID against training images seen, for snapshots along training runs (is a run still improving?).

    python analyses/fid_vs_steps.py --label "teacher (35 NFE)" RUN/model-step*.safetensors [--count 2000]
    python analyses/fid_vs_steps.py --plot        # the figure from the saved rows only

Any koopscope checkpoint: a teacher samples with its own sampler (Heun 18 = 35 NFE on the fashion preset),
HKD and KD in one step, CD in one. Held-out seeds 1,000,000+, against COUNT train images at the model's
resolution (cached). Images seen are the run's own plus, for a warm start (`train teacher --init`), those of
the checkpoint it started from when that file is still where the provenance says. Rows accumulate in
analyses/results/fid_vs_steps.json, keyed by the checkpoint's sha256 and the count, so a run continued over
sessions only scores its new snapshots, and several processes may score into it at once;
figures/fid_vs_steps.{png,pdf} draws one line per label and count, teachers and students in panels of their own.
Few samples bias FID upward: compare rows of the same count, not these with 5000-sample numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def score(path: Path, digest: str, label: str, count: int, seed: int, ref: str, progress: bool) -> dict:
    """One row: FID, KID, precision/recall of ``count`` samples of the checkpoint at ``path``."""
    from koopscope.io.meta import images_seen, read_meta
    from koopscope.metrics.samples import evaluate_checkpoint

    s = evaluate_checkpoint(path, count, reference=ref, seed=seed, batch=250, progress=progress)
    meta = read_meta(path)
    return {"label": label, "checkpoint": str(path), "sha256": digest, "kind": s["kind"], "nfe": s["nfe"],
            "step": meta["provenance"].get("step", 0), "images_seen": images_seen(meta), "count": count,
            "seeds": [seed, seed + count - 1], "reference": ref,
            **{k: s[k] for k in ("fid", "kid_mean", "kid_std", "precision", "recall")}}


def shipped() -> set[str]:
    """sha256 of the checkpoints the shipped models were copied from (their records in koopscope/models/)."""
    import json

    records = [json.loads(f.read_text()) for f in (ROOT / "koopscope/models").glob("*.json")]
    return {r.get("source_sha256") or r.get("sha256") for r in records} - {None}


def plot(rows: list[dict], stem: Path) -> None:
    """One panel for teachers and one for the students distilled from them, each its own x range; the shipped
    models' points starred."""
    from koopscope.io.figures import count_ticks, plain_log_ticks, pyplot, save_figure

    plt = pyplot()
    groups = [(title, [r for r in rows if (r["kind"] == "teacher") == is_teacher])
              for title, is_teacher in (("teachers", True), ("one-step students", False))]
    groups = [(title, g) for title, g in groups if g]
    fig, axes = plt.subplots(len(groups), 1, figsize=(5, 3.2 * len(groups)), squeeze=False)
    log = all(r["fid"] > 0 for r in rows)   # a tiny test count can give FID <= 0
    ship = shipped()
    for ax, (title, group) in zip(axes[:, 0], groups):
        keys = sorted({(r["label"], r["count"]) for r in group})
        for i, key in enumerate(keys):   # hollow markers, a new shape each time the ten colours come round again
            line = sorted((r["images_seen"], r["fid"]) for r in group if (r["label"], r["count"]) == key)
            ax.plot(*zip(*line), marker="osD^v"[i // 10 % 5], fillstyle="none", label=f"{key[0]}, {key[1]} samples")
        if stars := sorted((r["images_seen"], r["fid"]) for r in group if r["sha256"] in ship):
            ax.plot(*zip(*stars), "k*", markersize=9, linestyle="none", label="shipped")
        ax.set(xlabel="training images seen", ylabel="FID (log scale)" if log else "FID", title=f"FID of the {title}",
               yscale="log" if log else "linear")
        if log:
            plain_log_ticks(ax.yaxis, "12346")   # 10, 20, 30, 40, 60
        count_ticks(ax.xaxis)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    fig.subplots_adjust(hspace=0.4)
    save_figure(fig, stem)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="*")
    ap.add_argument("--label", help="the curve these checkpoints belong to (required with checkpoints)")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1_000_000)
    ap.add_argument("--ref", default="fashion:train", help="FID reference (dataset:split, as koopscope fid)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", action="store_true", help="only redraw the figure from the saved rows")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses/results/fid_vs_steps.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "figures/fid_vs_steps")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    args = ap.parse_args()
    from koopscope.io.results import append, has_row, rows, script_args_error

    if error := script_args_error(args.checkpoints, args.plot, count=(args.count, 2)):
        fail(error)
    if args.checkpoints and not args.label:
        fail("--label names the curve of these checkpoints")

    from koopscope.errors import KoopscopeError
    from koopscope.io.meta import sha256

    if args.checkpoints:
        import torch

        torch.set_num_threads(args.threads)
        for path in args.checkpoints:
            digest = sha256(path)
            if has_row(args.out, {"sha256": digest, "count": args.count, "label": args.label}):
                print(f"already scored: {path}", flush=True)
                continue
            try:
                row = score(path, digest, args.label, args.count, args.seed, args.ref, args.progress)
            except KoopscopeError as e:
                fail(f"{e}")
            append(args.out, row)   # each row saved as soon as it is measured, beside those of other processes
            print(f"{args.label} step {row['step']:>6} ({row['images_seen']:,} images): FID {row['fid']:.2f}, "
                  f"KID {row['kid_mean'] * 1e3:.2f}e-3, P {row['precision']:.3f}, R {row['recall']:.3f}", flush=True)
    saved = rows(args.out)
    if not saved:
        fail(f"no rows in {args.out} to plot")
    plot(saved, args.figure)


if __name__ == "__main__":
    main()
