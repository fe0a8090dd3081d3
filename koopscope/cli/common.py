"""Shared CLI plumbing: user errors as one line with exit code 2."""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path

import typer


class Solver(str, Enum):
    heun = "heun"
    euler = "euler"


def user_errors(fn):
    """Turn KoopscopeError (and missing files) into `error: ...` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..errors import KoopscopeError

        try:
            return fn(*args, **kwargs)
        except (KoopscopeError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def check_writable(folder: Path) -> None:
    """Refuse, before any work, a folder that cannot be created or written (a file in the way, no permission)."""
    import os

    from ..errors import KoopscopeError

    probe = Path(folder)
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise KoopscopeError(f"cannot write into {folder}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise KoopscopeError(f"cannot write into {folder}: {probe} is not writable")
