"""Results files that several processes fill in: read-modify-write under a lock, written atomically."""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path

from .atomic import write_json


@contextmanager
def locked(path: Path):
    """Hold ``path``.lock (beside the results file) for a read-modify-write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def merge(path: str | Path, header: dict, key: str = "runs", entries: dict | None = None) -> dict:
    """Update a results file: header fields replaced, ``entries`` added to (or replacing by name in) ``key``."""
    path = Path(path)
    with locked(path):
        old = json.loads(path.read_text()) if path.exists() else {}
        results = {**old, **header, key: {**old.get(key, {}), **(entries or {})}}
        write_json(path, results)
    return results


def append(path: str | Path, entry: dict, key: str = "rows") -> list[dict]:
    """Add ``entry`` to the list ``key`` of a results file; returns the list as written."""
    path = Path(path)
    with locked(path):
        old = json.loads(path.read_text()) if path.exists() else {}
        entries = [*old.get(key, []), entry]
        write_json(path, {**old, key: entries})
    return entries
