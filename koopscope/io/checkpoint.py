"""Checkpoints: tensors in safetensors, config and provenance as JSON metadata.

Nothing is unpickled on load, so a downloaded checkpoint cannot run code.
Layout of the metadata (one JSON string under the key "koopscope"):
    {"format": 1, "kind": "teacher"|"hkd"|..., "config": {...}, "provenance": {...}, "state": {...},
     "consistency": {...}}   (the last only on shipped HKD models: `koopscope consistency` at ship time)
Tensor names are prefixed by the part they belong to ("model.", "ema.", "optim.", "rng.").
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import CheckpointError
from .atomic import atomic_path
from .meta import FORMAT, META_KEY, read_meta


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
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return Path(path)


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...] | None = None):
    """Return (tensors, meta); check the kind if given."""
    meta = read_meta(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and meta["kind"] not in kinds:
        raise CheckpointError(f"{path} is a '{meta['kind']}' checkpoint, expected {' or '.join(kinds)}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint data ({e})") from None
    return tensors, meta


def annotate(src: str | Path, dest: str | Path, **fields) -> Path:
    """Copy a checkpoint to ``dest`` (atomically) with top-level metadata fields added or replaced."""
    tensors, meta = load_checkpoint(src)
    with atomic_path(dest) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps({**meta, **fields})})
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
