"""Where a one-step student's samples differ from its teacher's: their radially averaged power spectra.

    python analyses/sample_spectra.py CKPT [CKPT ...] --store HELDOUT [--count 256] \
        [--blur-store STORE --blur-count 5000]
    python analyses/sample_spectra.py --plot        # the figure from the saved rows only

On COUNT seeds of a trajectory store of the student's teacher (held-out seeds: integrated by the teacher, never
trained on), the student's one-step samples and the teacher's samples (the store's final states, clamped to
[-1, 1]) are compared by radially averaged power spectra: the mean over images of |FFT|^2 of each image minus its
own mean, binned by integer radius. Per radius the rows hold the student's power over the teacher's (below 1: the
student has less detail there, the blur an MSE fit of what it cannot predict leaves) and the power of the
difference over the teacher's (1 or more: the student knows nothing of the teacher's sample at that frequency).
Summaries over three radius bands: low (r <= 4 cycles per image), mid (4 < r <= 10), high (r > 10).

How much of the student's FID does its missing power explain? --blur-store: the teacher's own samples (the first
BLUR_COUNT final states of STORE) are scored against the Fashion-MNIST training images as they are and filtered to
the student's power spectrum (each radius's frequencies scaled by sqrt(student power / teacher power): the teacher's
content with the student's spectrum). Rows accumulate in analyses/results/sample_spectra.json ("rows" keyed by the
checkpoint's sha256, the store and the count; "blur" by sha256, store and count); the figure is
figures/sample_spectra.{png,pdf}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BANDS = {"low": (0, 4), "mid": (4, 10), "high": (10, 1000)}   # (exclusive, inclusive] radius in cycles per image


def _radius(h: int, w: int):
    """(H, W) integer radius of each FFT frequency, in cycles per image."""
    import torch

    fy, fx = torch.fft.fftfreq(h, 1 / h), torch.fft.fftfreq(w, 1 / w)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).round().long()


def radial_power(x):
    """(R,) mean power per integer radius of images x (N, C, H, W), each image's mean removed."""
    import torch

    x = x.double() - x.double().mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().square().mean(dim=(0, 1))
    radius = _radius(*power.shape).flatten()
    return torch.bincount(radius, power.flatten()) / torch.bincount(radius).clamp(min=1)


def radial_filter(x, gain):
    """Images x (N, C, H, W) with the frequencies of each radius r scaled by gain[r] (float32)."""
    import torch

    return torch.fft.ifft2(torch.fft.fft2(x.double()) * gain[_radius(*x.shape[-2:])]).real.float()


def teacher_fid(store, count: int, gain=None) -> dict:
    """FID, KID, precision and recall of the teacher's first ``count`` samples of ``store`` against the Fashion-MNIST
    training images, as they are or with each radius r's frequencies scaled by ``gain[r]``."""
    from koopscope.metrics.samples import evaluate_batches, load_ref

    ref = load_ref("fashion:train", count, int(store.manifest["image_shape"][-1]))
    batches = (b if gain is None else radial_filter(b, gain).clamp(-1, 1) for b in store.finals(count))
    scored = evaluate_batches(batches, count, ref)
    return {m: scored[m] for m in ("fid", "kid_mean", "precision", "recall", "count")}


def blur(row: dict, store, count: int, teacher: dict) -> dict:
    """The teacher's first ``count`` samples of ``store`` filtered to the power spectrum of ``row``'s student and
    scored, beside ``teacher``, their score as they are (``teacher_fid(store, count)``)."""
    import torch

    t, s = torch.tensor(row["teacher_power"]), torch.tensor(row["student_power"])
    gain = torch.where(t > 0, (s / t.clamp(min=1e-30)).sqrt(), torch.ones_like(t))
    gain[0] = 1.0   # the mean is kept
    return {"checkpoint": row["checkpoint"], "sha256": row["sha256"], "spectra_store": row["store"],
            "store": str(store.path), "count": count, "teacher": teacher, "filtered": teacher_fid(store, count, gain)}


def score(path: Path, digest: str, store, count: int) -> dict:
    import torch

    from koopscope.generators import load_model
    from koopscope.hkd.sample import one_step
    from koopscope.io.meta import images_seen
    from koopscope.spectral.consistency import store_trajectories

    model, meta = load_model(path, "hkd")
    states, _ = store_trajectories(store, meta, count)   # refuses a store of another teacher
    teacher = states[:, -1].clamp(-1, 1)
    student = one_step(model, [int(s) for s in store.seeds[:count]]).clamp(-1, 1)
    t, s, e = (radial_power(v) for v in (teacher, student, student - teacher))
    radius = torch.arange(len(t))
    bands = {}
    for name, (lo, hi) in BANDS.items():
        m = (radius > lo) & (radius <= hi)
        bands[name] = {"student_over_teacher": float(s[m].sum() / t[m].sum()),
                       "error_over_teacher": float(e[m].sum() / t[m].sum())}
    return {"checkpoint": str(path), "sha256": digest, "step": meta["provenance"].get("step", 0),
            "images_seen": images_seen(meta), "store": str(store.path), "count": count,
            "seeds": [int(store.seeds[0]), int(store.seeds[count - 1])],
            "mse": float((student - teacher).square().mean()),
            "teacher_power": t.tolist(), "student_power": s.tolist(), "error_power": e.tolist(), "bands": bands}


def plot(rows: list[dict], stem: Path) -> None:
    import numpy as np

    from koopscope.io.figures import plain_log_ticks, pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, r in enumerate(sorted(rows, key=lambda r: r["images_seen"])):
        t, name = np.asarray(r["teacher_power"]), Path(r["checkpoint"])
        radius = np.flatnonzero(t[1:] > 0) + 1   # not the mean, nor a radius with no frequency on the grid
        for ax, key in zip(axes, ("student_power", "error_power")):
            ax.plot(radius, np.asarray(r[key])[radius] / t[radius], color=f"C{i}",
                    label=f"{name.parent.name}/{name.stem} ({r['images_seen']:,} images)")
    axes[0].axhline(1, color="k", lw=0.5)
    axes[0].set(xlabel="radius (cycles per image)", title="student power / teacher power")
    axes[1].set(xlabel="radius (cycles per image)", title="power of (student - teacher) / teacher power",
                yscale="log")
    plain_log_ticks(axes[1].yaxis, "1235")   # 0.03, 0.05, 0.1, 0.2
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(1.1, -0.18), ncol=2, frameon=False)
    save_figure(fig, stem)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="*")
    ap.add_argument("--store", type=Path, help="a trajectory store of the checkpoints' teacher (held-out seeds)")
    ap.add_argument("--count", type=int, default=256, help="seeds compared")
    ap.add_argument("--blur-store", type=Path, help="also score the teacher's samples in this store as they are "
                    "and filtered to each student's power spectrum")
    ap.add_argument("--blur-count", type=int, default=5000, help="teacher samples scored with --blur-store")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", action="store_true", help="only redraw the figure from the saved rows")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses/results/sample_spectra.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "figures/sample_spectra")
    args = ap.parse_args()
    from koopscope.io.results import append, find_row, has_row, rows, script_args_error

    if error := script_args_error(args.checkpoints, args.plot, count=(args.count, 1), blur_count=(args.blur_count, 1)):
        fail(error)
    if args.checkpoints and not args.store:
        fail("--store names the trajectories to compare with")

    from koopscope.errors import KoopscopeError
    from koopscope.io.meta import sha256

    if args.checkpoints:
        import torch

        from koopscope.trajectories.loader import TrajectoryStore

        torch.set_num_threads(args.threads)
        try:
            store = TrajectoryStore(args.store)
            blur_store = TrajectoryStore(args.blur_store) if args.blur_store else None
        except KoopscopeError as e:
            fail(f"{e}")
        if blur_store is not None and blur_store.manifest.get("teacher_sha256") != store.manifest.get("teacher_sha256"):
            fail(f"{args.blur_store} holds trajectories of another teacher than {args.store}")
        if blur_store is not None and len(blur_store) < args.blur_count:
            fail(f"{args.blur_store} holds {len(blur_store)} trajectories, fewer than --blur-count {args.blur_count}")
        teacher = None   # the teacher's unfiltered score: the same for every checkpoint, measured once
        if blur_store is not None:
            same = find_row(args.out, {"store": str(blur_store.path), "count": args.blur_count}, key="blur")
            teacher = same["teacher"] if same else None
        for path in args.checkpoints:
            digest = sha256(path)
            try:
                if row := find_row(args.out, {"sha256": digest, "store": str(store.path), "count": args.count}):
                    print(f"already measured: {path}", flush=True)
                else:
                    row = score(path, digest, store, args.count)
                    append(args.out, row)
                    print(f"{path}: MSE {row['mse']:.4f}; student/teacher power " + ", ".join(
                        f"{k} {v['student_over_teacher']:.3f}" for k, v in row["bands"].items()) + "; error/teacher "
                        + ", ".join(f"{k} {v['error_over_teacher']:.3f}" for k, v in row["bands"].items()), flush=True)
                if blur_store is not None and not has_row(args.out, {"sha256": digest, "spectra_store": str(store.path),
                                                                     "store": str(blur_store.path),
                                                                     "count": args.blur_count}, key="blur"):
                    teacher = teacher or teacher_fid(blur_store, args.blur_count)
                    b = append(args.out, blur(row, blur_store, args.blur_count, teacher), key="blur")["blur"][-1]
                    print(f"{path}: the teacher's {args.blur_count} samples score FID {b['teacher']['fid']:.2f}, "
                          f"{b['filtered']['fid']:.2f} filtered to this student's spectrum", flush=True)
            except KoopscopeError as e:
                fail(f"{e}")
    saved = rows(args.out)
    if not saved:
        fail(f"no rows in {args.out}: measure checkpoints first")
    plot(saved, args.figure)
    print(f"figure: {args.figure}.png")


if __name__ == "__main__":
    main()
