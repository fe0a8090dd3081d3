"""Checkpoint metadata, read from the safetensors header without torch (layout in ``checkpoint``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError
from ..models import SHIPPED, SHIPPED_TEACHER

FORMAT = 1
META_KEY = "koopscope"
# What the code reads from each kind's "config" (other kinds are read only by their own code).
CONFIG_KEYS = {"teacher": ("unet", "sampler_steps", "image_shape"), "hkd": ("model", "image_shape"),
               "kd": ("unet", "sigma_max", "image_shape"), "cd": ("unet", "sigma_min", "sigma_max", "image_shape")}
_NAMES = {"teacher": "teacher", "hkd": "HKD", "kd": "KD", "cd": "CD"}
# training snapshots committed in a source checkout (absent from an installed copy), where a warm start's parent is
# found when the run that made it was on another machine
COMMITTED = Path(__file__).resolve().parents[2] / "checkpoints"


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (checkpoints are named by it in provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_meta(path: str | Path) -> dict:
    """Metadata only (fast: reads the header)."""
    path = Path(path)
    if path.is_dir():
        model = path / "model.safetensors"
        hint = f"; its model is {model}" if model.is_file() else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
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
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: corrupt koopscope metadata")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')} is not supported (expected {FORMAT})")
    if bad := [k for k, t in (("kind", str), ("config", dict)) if not isinstance(meta.get(k), t)]:
        raise CheckpointError(f"{path}: the koopscope metadata has no valid {' or '.join(bad)}; not a usable "
                              "checkpoint")
    return meta


def warm_starts(meta: dict):
    """(sha256, metadata) of each checkpoint that ``meta``'s weights were warm-started from (`--init`), nearest
    first. The chain is followed through files that still hold what the provenance names, at the recorded path or
    else among the committed snapshots and the shipped models (a run on another machine or checkout); the last one
    yielded has metadata None when no such file is found."""
    prov = meta.get("provenance", {})
    while digest := prov.get("init_sha256"):
        init = _holding(digest, Path(prov.get("init") or ""))
        parent = read_meta(init) if init else None
        yield digest, parent
        if parent is None:
            return
        prov = parent.get("provenance", {})


def _holding(digest: str, recorded: Path) -> Path | None:
    """The file whose sha256 is ``digest``: the recorded path if it still holds it, else a committed snapshot (a
    source checkout's checkpoints/: the one of that name first, then any, as a run's model-stepN is committed under
    a name of its own) or a shipped model."""
    named = COMMITTED / recorded.name
    others = sorted(p for p in COMMITTED.glob("*.safetensors") if p != named) if COMMITTED.is_dir() else []
    places = (recorded, named, SHIPPED_TEACHER, SHIPPED, *others)
    return next((p for p in places if p.is_file() and sha256(p) == digest), None)


def images_seen(meta: dict) -> int:
    """Training images behind a checkpoint, those of the checkpoints it was warm-started from included (as far as
    their files still match)."""
    chain = [meta, *(parent for _, parent in warm_starts(meta) if parent is not None)]
    return sum(int(m.get("provenance", {}).get("images_seen", 0)) for m in chain)   # untrained: none


def require_kind(meta: dict, path: str | Path, kinds: str | tuple[str, ...]) -> None:
    """Refuse a checkpoint of another kind: the one message for it, naming the command that makes the right one."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if meta["kind"] not in kinds:
        names = [_NAMES.get(k, k) for k in kinds]
        wanted = " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
        article = "an" if names[0] == "HKD" else "a"
        hint = f" (train one with `koopscope train {kinds[0]}`)" if len(kinds) == 1 else ""
        raise CheckpointError(f"{path} is a '{meta['kind']}' checkpoint; this needs {article} {wanted} "
                              f"checkpoint{hint}")


def require_config(meta: dict, path: str | Path, *keys: str) -> None:
    """Refuse a checkpoint whose config lacks ``keys`` (default: all that its kind's readers use)."""
    if missing := [k for k in keys or CONFIG_KEYS.get(meta["kind"], ()) if k not in meta["config"]]:
        raise CheckpointError(f"{path}: the {meta['kind']} checkpoint's config lacks {', '.join(missing)}")
