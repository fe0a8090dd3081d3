"""Checkpoint metadata, read from the safetensors header without torch (layout in ``checkpoint``)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError

FORMAT = 1
META_KEY = "koopscope"


def read_meta(path: str | Path) -> dict:
    """Metadata only (fast: reads the header)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({e})") from None
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a koopscope checkpoint (no '{META_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: corrupt koopscope metadata") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')} is not supported (expected {FORMAT})")
    return meta
