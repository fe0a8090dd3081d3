"""Shared CLI plumbing: user errors as one line with exit code 2, output locations checked before work."""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path

import typer

MIN_FREE = 4 << 20   # bytes: refuse to start writing into a file system with less free space than this


class Solver(str, Enum):
    heun = "heun"
    euler = "euler"


def user_errors(fn):
    """Turn KoopscopeError and OSError (missing file, full disk, ...) into `error: ...` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..errors import KoopscopeError
        from ..io.atomic import os_reason

        try:
            return fn(*args, **kwargs)
        except KoopscopeError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            print(f"error: {where}{os_reason(e)}", file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def check_output(path: Path, kind: str = "file") -> None:
    """Refuse, before any work, an output `path` (a "file" or a "folder") that cannot be written: a folder
    where a file is wanted or the reverse, a file in the way of its folder, no permission, a read-only or
    (nearly) full file system."""
    import os
    import shutil

    from ..errors import KoopscopeError

    path = Path(path)
    if path.exists() and path.is_dir() != (kind == "folder"):
        raise KoopscopeError(f"cannot write {path}: it is a {'folder' if path.is_dir() else 'file'}, "
                             f"not a {kind}")
    probe = path.parent if kind == "file" else path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise KoopscopeError(f"cannot write {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise KoopscopeError(f"cannot write {path}: {probe} is not writable")
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE:
        raise KoopscopeError(f"cannot write {path}: only {free / 2**20:.1f} MiB free on its file system")


FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".nc", ".json", ".npz", ".safetensors")  # never a folder


def outputs(out: Path, name: str, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """The files a command writes for ``--out OUT``, checked before any work: OUT itself when it ends in one of
    ``suffixes`` (the others beside it, named after it), else OUT/<name><suffix> for each (OUT is a folder).
    Keys are the suffixes without the dot."""
    from ..errors import KoopscopeError

    if out.suffix in FILE_SUFFIXES and out.suffix not in suffixes:
        raise KoopscopeError(f"--out '{out}': give a folder or a {' / '.join(suffixes)} file")
    is_file = out.suffix in suffixes
    check_output(out, "file" if is_file else "folder")
    stem = out.with_suffix("") if is_file else out / name
    return {s[1:]: stem.parent / (stem.name + s) for s in suffixes}
