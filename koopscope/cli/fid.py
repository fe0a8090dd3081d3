"""`koopscope fid`: FID, KID and precision/recall of a checkpoint's samples, an image folder or an .npz."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .common import Solver, outputs, user_errors


@user_errors
def fid(
    source: Path = typer.Argument(..., help="Teacher/HKD/KD/CD checkpoint, folder of PNGs, or .npz of uint8 "
                                            "'images'."),
    ref: str = typer.Option("fashion:train", help="DATASET[:SPLIT] (at the samples' resolution) or a .npz "
                                                  "(cached reference features or another samples .npz)."),
    count: int = typer.Option(10_000, help="Samples to evaluate (files: at most this many)."),
    seed: int = typer.Option(0, help="Checkpoints: first seed; image i uses seed + i."),
    steps: int = typer.Option(None, help="Teacher: grid points (Heun NFE = 2N - 1; default the checkpoint's); "
                                         "CD: steps (1-3)."),
    solver: Solver = typer.Option(Solver.heun, help="Teacher only: ODE solver."),
    batch: int = typer.Option(256, help="Images sampled and kept in memory at once."),
    out: Path = typer.Option(None, help="Also write the results to this .json file (or OUT/fid.json for a folder)."),
    floor: bool = typer.Option(False, "--floor", help="Also compute the real-vs-real floor at the same count "
                                                       "(dataset train vs test, cached)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Evaluate samples against a reference set (Inception features; FID is biased upward below 10k)."""
    from ..errors import KoopscopeError
    from ..io.atomic import write_json
    from ..metrics.samples import evaluate_checkpoint, evaluate_files
    from ..metrics.scores import SMALL_COUNT

    if count <= 0:
        raise KoopscopeError("--count must be positive")
    if batch <= 0:
        raise KoopscopeError("--batch must be positive")
    if out is not None:
        out = outputs(out, "fid", (".json",))["json"]
    common = dict(reference=ref, batch=batch, floor=floor, progress=progress)
    if source.is_dir() or source.suffix == ".npz":
        r = evaluate_files(source, count, **common)
    else:
        r = evaluate_checkpoint(source, count, steps=steps, solver=solver.value, seed=seed, **common)
    if r["count"] < SMALL_COUNT:
        print(f"warning: FID from {r['count']} < {SMALL_COUNT} samples is biased upward; read it against the "
              f"real-vs-real floor at the same count ({'below' if floor else '--floor'})", file=sys.stderr)
    sampler = f" ({r['solver']} {r['steps']} steps)" if r["kind"] == "teacher" else ""
    print(f"source     {r['source']} [{r['kind']}{sampler}]\n"
          f"reference  {_ref_name(r['reference'], ref)}\n"
          f"count      {r['count']}\n"
          f"NFE        {r['nfe'] if r['nfe'] is not None else '-'}\n"
          f"FID        {r['fid']:.3f}\n"
          f"KID        {r['kid_mean']:.5f} ± {r['kid_std']:.5f}\n"
          f"precision  {r['precision']:.4f}\n"
          f"recall     {r['recall']:.4f}\n"
          f"seconds    {r['seconds']:.1f}")
    if floor:
        f = r["floor"]
        print(f"floor      FID {f['fid']:.3f}, KID {f['kid_mean']:.5f} ± {f['kid_std']:.5f}, precision "
              f"{f['precision']:.4f}, recall {f['recall']:.4f} (real vs real, {f['count']} each)")
    if out is not None:
        write_json(out, r)
        print(f"-> {out}")


def _ref_name(meta: dict, spec: str) -> str:
    if meta.get("split"):
        return f"{meta['name']}:{meta['split']} ({meta['count']} images, {meta['resolution']}px)"
    return spec
