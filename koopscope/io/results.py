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


def _update(path: str | Path, change) -> dict:
    """Write ``change(old)`` over a results file (``{}`` when there is none yet), under its lock; returns it."""
    path = Path(path)
    with locked(path):
        results = change(json.loads(path.read_text()) if path.exists() else {})
        write_json(path, results)
    return results


def merge(path: str | Path, header: dict, key: str = "runs", entries: dict | None = None) -> dict:
    """Update a results file: header fields replaced, ``entries`` added to (or replacing by name in) ``key``."""
    return _update(path, lambda old: {**old, **header, key: {**old.get(key, {}), **(entries or {})}})


def append(path: str | Path, entry: dict, key: str = "rows") -> dict:
    """Add ``entry`` to the list ``key`` of a results file; returns the results as written."""
    return _update(path, lambda old: {**old, key: [*old.get(key, []), entry]})


def rows(path: str | Path, key: str = "rows") -> list[dict]:
    """The list ``key`` of a results file (empty when there is none yet)."""
    path = Path(path)
    return json.loads(path.read_text()).get(key, []) if path.is_file() else []


def find_row(path: str | Path, match: dict, key: str = "rows") -> dict | None:
    """The first row of the list ``key`` of a results file agreeing with ``match`` on each of its fields, or None."""
    return next((r for r in rows(path, key) if all(r.get(k) == v for k, v in match.items())), None)


def has_row(path: str | Path, match: dict, key: str = "rows") -> bool:
    """Whether the list ``key`` of a results file holds a row agreeing with ``match`` on each of its fields."""
    return find_row(path, match, key) is not None


def script_args_error(checkpoints: list[Path], plot: bool, **lowest: tuple[int, int]) -> str | None:
    """The one-line complaint about a results script's arguments, or None: checkpoints to measure or --plot, each
    ``name=(value, smallest allowed)`` (as ``--name``), and every checkpoint a file."""
    if not checkpoints and not plot:
        return "give checkpoints to measure, or --plot"
    for name, (value, low) in lowest.items():
        if value < low:
            return f"--{name.replace('_', '-')} must be at least {low}, got {value}"
    return next((f"no checkpoint at {p}" for p in checkpoints if not Path(p).is_file()), None)
