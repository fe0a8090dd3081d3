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
    loaded = [load_checkpoint(path) for path in paths]
    weights = [prefixed(tensors, "ema") or prefixed(tensors, "model") for tensors, _ in loaded]
    network = [(meta["kind"], meta["config"], w.keys()) for (_, meta), w in zip(loaded, weights)]
    for path, net in zip(paths[1:], network[1:]):
        if net != network[0]:
            raise KoopscopeError(f"{path} is not a snapshot of the same network as {paths[0]} (another kind, config "
                                 "or weights); average snapshots of one run")
    mean = {k: (sum(w[k].double() for w in weights) / len(weights)).to(v.dtype) if v.is_floating_point()
            else weights[-1][k] for k, v in weights[0].items()}
    last = loaded[-1][1]
    averaged = [{"path": str(path), "sha256": sha256(path), "step": meta["provenance"].get("step")}
                for path, (_, meta) in zip(paths, loaded)]
    return save_checkpoint(out, with_prefix(mean, "ema"), last["kind"], last["config"],
                           {**last["provenance"], "averaged": averaged}, state={"step": last["provenance"].get("step")})
