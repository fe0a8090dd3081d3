"""Streaming, resumable, torchrun-ready generation of teacher trajectories into a store."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..diffusion.config import SIGMA_MAX, SIGMA_MIN
from ..diffusion.samplers import SAMPLERS, check_solver, karras_sigmas, nfe, seeded_noise
from ..diffusion.teacher import load_teacher
from ..errors import KoopscopeError
from ..io.meta import sha256
from ..progress import bars
from ..train import distributed as D
from . import store as S

RHO = 7.0
SHARD_SIZE = 256          # default trajectories per shard: a kill loses at most one shard's worth
SHARD_BYTES = 256 << 20   # ... and fewer for large states, so a shard (held in RAM while made) stays this small


@dataclass
class GenerateResult:
    path: Path
    existing: int   # trajectories the store held before this run
    total: int      # trajectories it holds now
    requested: int

    @property
    def generated(self) -> int:
        return self.total - self.existing


def integrate(net, seeds, shape: tuple[int, ...], sigmas: torch.Tensor, solver: str, out: np.ndarray,
              device="cpu") -> None:
    """Integrate the PF-ODE from x_T = SIGMA_MAX * seeded_noise(seeds); write the state at every grid
    time into `out` (len(seeds), len(sigmas), *shape) as float32."""
    def record(i: int, _sigma: float, x: torch.Tensor) -> None:
        out[:, i] = x.float().cpu().numpy()

    x = seeded_noise(seeds, shape, device) * SIGMA_MAX
    with torch.no_grad():
        SAMPLERS[solver](net, x, sigmas.to(device), record)


def _prepare(out: Path, wanted: dict, header: dict, count: int) -> None:
    """Rank 0, under the store lock: create or check the header, drop unreadable shards and the short last
    shard of a smaller count (both made again), clean up."""
    old = S.read_header(out) if (out / S.MANIFEST).exists() else None
    if old is None and any(f.name != ".lock" for f in out.iterdir()):
        raise KoopscopeError(f"{out} is not empty and not a trajectory store; choose an empty or new folder")
    wanted = {**wanted, "shard_size": wanted["shard_size"] or (old or header)["shard_size"]}
    if old is not None:
        S.check_settings(out, old, wanted)
    shape = (len(header["sigmas"]), *wanted["image_shape"])
    ranges = S.plan(count, wanted["shard_size"], wanted["seed_offset"])
    ranks = S.rank_entries(out)
    for e in (e for entries in ranks.values() for e in entries):
        start, stop = ranges[e["index"]] if 0 <= e["index"] < len(ranges) else (None, None)
        if e["seed_start"] != start or e["seed_stop"] > stop:
            raise KoopscopeError(f"{out} holds seeds [{e['seed_start']}, {e['seed_stop']}) as shard "
                                 f"{e['index']}, which does not fit --count {count}; "
                                 "use a larger count or another store")
    kept = []
    for rank, entries in ranks.items():
        good = [e for e in entries if e["seed_stop"] == ranges[e["index"]][1] and _readable(out, e, shape)]
        if len(good) < len(entries):
            S.write_rank_manifest(out, rank, good)
        kept += good
    S.write_header(out, {**header, **wanted, "count": count})
    S.remove_unlisted(out, kept)


def _readable(out: Path, entry: dict, shape: tuple[int, ...]) -> bool:
    try:
        S.open_shard(out, entry, shape)
        return True
    except KoopscopeError:
        return False


def _agree(world: int, error: str | None) -> None:
    """Raise rank 0's error on every rank."""
    if world > 1:
        box = [error]
        torch.distributed.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise KoopscopeError(error)


def _settings(teacher_ckpt: Path, meta: dict, steps: int, solver: str, shard_size: int | None,
              seed_offset: int) -> tuple[dict, dict]:
    """(settings a resumed run must match, the rest of the header)."""
    shape = meta["config"]["image_shape"]
    sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX, RHO).tolist()
    wanted = {"teacher_sha256": sha256(teacher_ckpt), "solver": solver, "steps": steps, "rho": RHO,
              "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "image_shape": list(shape), "dtype": "float32",
              "shard_size": shard_size, "seed_offset": seed_offset}
    per_trajectory = 4 * len(sigmas) * int(np.prod(shape))
    info = {"sigmas": sigmas, "shard_size": max(1, min(SHARD_SIZE, SHARD_BYTES // per_trajectory)),
            "nfe_per_trajectory": nfe(solver, steps),
            "teacher": {"path": str(teacher_ckpt.resolve()), "kind": meta["kind"], "config": meta["config"],
                        "provenance": meta["provenance"]}}
    return wanted, info


def generate(teacher_ckpt: str | Path, out: str | Path, count: int, steps: int | None = None,
             solver: str = "heun", batch: int = 64, shard_size: int | None = None, seed_offset: int = 0,
             progress: bool = True) -> GenerateResult:
    """Write `count` teacher trajectories (seeds seed_offset + [0, count)) into the store `out`.

    Re-running the same call resumes: shards already listed are kept; with a larger `count` (same
    settings) it grows the store. Under torchrun, shard j is written by rank j % world. `steps`
    defaults to the checkpoint's sampler_steps, `shard_size` to the store's (or SHARD_SIZE, fewer if
    that would exceed SHARD_BYTES of states).
    """
    for name, v in {"count": count, "batch": batch, "shard_size": shard_size, "steps": steps}.items():
        if v is not None and v <= 0:
            raise KoopscopeError(f"{name} must be positive (got {v})")
    check_solver(solver)
    teacher_ckpt, out = Path(teacher_ckpt), Path(out)
    net, meta = load_teacher(teacher_ckpt)
    steps = steps or int(meta["config"]["sampler_steps"])
    owns_group = not D.active()
    rank, world, device = D.init()
    try:
        with ExitStack() as stack:
            error = None
            if rank == 0:
                try:
                    out.mkdir(parents=True, exist_ok=True)
                    stack.enter_context(S.lock(out))
                    wanted, info = _settings(teacher_ckpt, meta, steps, solver, shard_size, seed_offset)
                    _prepare(out, wanted, info, count)
                except (KoopscopeError, OSError) as e:
                    error = str(e)
            _agree(world, error)
            done = S.read_shards(out)
            existing = sum(e["count"] for e in done)
            ranges = S.plan(count, S.read_header(out)["shard_size"], seed_offset)
            finished = {e["index"] for e in done}
            todo = [j for j in range(rank, len(ranges), world) if j not in finished]
            pending = sum(ranges[j][1] - ranges[j][0] for j in todo)
            bar = stack.enter_context(bars(progress and rank == 0 and pending > 0))
            task = bar.add_task("trajectories", total=pending)
            mine = S.rank_entries(out).get(rank, [])
            sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX, RHO)
            shape = tuple(meta["config"]["image_shape"])
            net.to(device)
            for j in todo:
                a, b = ranges[j]
                states = np.empty((b - a, len(sigmas), *shape), np.float32)
                for s in range(a, b, batch):
                    e = min(s + batch, b)
                    integrate(net, range(s, e), shape, sigmas, solver, states[s - a:e - a], device)
                    bar.advance(task, e - s)
                mine.append(S.write_shard(out, rank, j, states, np.arange(a, b)))
                S.write_rank_manifest(out, rank, mine)
                del states   # free it before the next shard is allocated
            D.barrier()
            total = sum(e["count"] for e in S.read_shards(out))
    finally:
        if owns_group:
            D.shutdown()
    return GenerateResult(out, existing, total, count)
