"""Post-hoc averaging of a run's snapshots: the mean of their EMA weights, a longer EMA chosen after training."""

from __future__ import annotations

from pathlib import Path

from ..errors import KoopscopeError
from ..io.checkpoint import load_checkpoint, prefixed, save_checkpoint, with_prefix
from ..io.meta import sha256


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Write to ``out`` the checkpoint whose weights are the mean of ``paths``' EMA weights (floating tensors;
    integer buffers from the last), with the last one's config and provenance plus the snapshots averaged. All
    must be of one kind and one config (snapshots of one network)."""
    if len(paths) < 2:
        raise KoopscopeError(f"averaging needs at least two checkpoints, got {len(paths)}")
    total, dtypes, metas = None, {}, []
    for path in paths:
        tensors, meta = load_checkpoint(path)
        weights = prefixed(tensors, "ema") or prefixed(tensors, "model")
        if metas and (meta["kind"], meta["config"]) != (metas[0]["kind"], metas[0]["config"]):
            raise KoopscopeError(f"{path} is not a snapshot of the same network as {paths[0]} (another kind or "
                                 "config); average snapshots of one run")
        if total is None:
            dtypes = {k: v.dtype for k, v in weights.items()}
            total = {k: v.double() if v.is_floating_point() else v for k, v in weights.items()}
        elif weights.keys() != total.keys():
            raise KoopscopeError(f"{path} holds other weights than {paths[0]}; average snapshots of one run")
        else:
            for k, v in weights.items():
                total[k] = total[k] + v.double() if v.is_floating_point() else v
        metas.append({**meta, "sha256": sha256(path), "path": str(path)})
    mean = {k: (v / len(paths)).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()}
    last = metas[-1]
    averaged = [{"path": m["path"], "sha256": m["sha256"], "step": m["provenance"].get("step")} for m in metas]
    return save_checkpoint(out, with_prefix(mean, "ema"), last["kind"], last["config"],
                           {**last["provenance"], "averaged": averaged}, state={"step": last["provenance"].get("step")})
