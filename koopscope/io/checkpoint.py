"""Checkpoints: tensors in safetensors, config and provenance as JSON metadata.

Nothing is unpickled on load, so a downloaded checkpoint cannot run code.
Layout of the metadata (one JSON string under the key "koopscope"):
    {"format": 1, "kind": "teacher"|"hkd"|..., "config": {...}, "provenance": {...}, "state": {...},
     "consistency": {...}}   (the last only on shipped HKD models: `koopscope consistency` at ship time)
Tensor names are prefixed by the part they belong to ("model.", "ema.", "optim.", "rng.").
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import CheckpointError
from .atomic import atomic_path, strict_json
from .meta import FORMAT, META_KEY, read_meta, require_config, require_kind


def git_commit() -> str | None:
    """The commit of the koopscope source tree, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(**extra) -> dict:
    return {"koopscope_version": __version__, "git_commit": git_commit(), "torch": torch.__version__, **extra}


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, config: dict,
                    provenance: dict, state: dict | None = None) -> Path:
    """Write tensors + metadata atomically. `state` holds small JSON-able training state."""
    meta = {"format": FORMAT, "kind": kind, "config": config, "provenance": provenance, "state": state or {}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _write(tensors, meta, path)
    return Path(path)


def _write(tensors: dict[str, torch.Tensor], meta: dict, path: str | Path) -> None:
    """save_file atomically; its I/O errors (a full disk) become OSErrors, which atomic_path reports in one line."""
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={META_KEY: strict_json(meta)})
        except SafetensorError as e:   # "... I/O error: No space left on device (os error 28)"
            if code := re.search(r"os error (\d+)", str(e)):
                raise OSError(int(code.group(1)), str(e)) from None
            raise


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...] | None = None):
    """Return (tensors, meta); check the kind if given."""
    meta = read_meta(path)
    if kind:
        require_kind(meta, path, kind)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint data ({e})") from None
    require_config(meta, path)
    return tensors, meta


def load_weights(net: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load a checkpoint's EMA weights (else its model weights) into ``net``; refuse non-finite weights (a
    diverged run) and weights of another shape, one line each with the detail."""
    weights = prefixed(tensors, "ema") or prefixed(tensors, "model")
    if bad := [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]:
        raise CheckpointError(f"{path}: {len(bad)} weight tensors hold NaN or infinity ({', '.join(bad[:3])}"
                              f"{', ...' if len(bad) > 3 else ''}); the run diverged, use an earlier checkpoint")
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:   # "Error(s) in loading state_dict for X:" then one line per problem
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:] if line.strip())
        detail = detail if len(detail) <= 500 else detail[:500] + " ..."
        raise CheckpointError(f"{path}: weights do not match the stored config ({detail})") from None


def annotate(src: str | Path, dest: str | Path, **fields) -> Path:
    """Copy a checkpoint to ``dest`` (atomically) with top-level metadata fields added or replaced."""
    tensors, meta = load_checkpoint(src)
    _write(tensors, {**meta, **fields}, dest)
    return Path(dest)


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Sub-dict of tensors under `prefix.` with the prefix stripped."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer state_dict into tensors + JSON (param_groups, scalar state)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in list(tensors.items()) + list(info["scalars"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
