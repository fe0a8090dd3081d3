"""Atomic writes: write to a temp file in the target folder, fsync, rename; strict JSON."""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import KoopscopeError


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside `path`; on success it replaces `path` atomically.

    Any OSError while writing (disk full, read-only, not a folder) becomes a one-line KoopscopeError
    naming `path`, and the temp file is removed: `path` is either the old file or the whole new one.
    """
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 (or a writer's own) -> the usual mode
        os.replace(tmp, path)
    except OSError as e:
        raise KoopscopeError(f"cannot write {path}: {os_reason(e)}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def os_reason(e: OSError) -> str:
    """The reason of an OSError in a few words ("No space left on device"); h5py's own text spans lines."""
    return os.strerror(e.errno) if e.errno else (str(e).splitlines() or [type(e).__name__])[0]


def json_safe(obj):
    """``obj`` with NaN and infinities as None (JSON null) at any depth: JSON has no NaN."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def strict_json(obj, **kwargs) -> str:
    """json.dumps with non-finite numbers as null, never a bare NaN (``kwargs`` go to json.dumps)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(strict_json(obj, indent=2, sort_keys=True) + "\n")
