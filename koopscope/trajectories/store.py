"""On-disk layout of a trajectory store, and its atomic writes.

    STORE/manifest.json              header: format, settings, sigma grid, teacher, requested count
    STORE/manifest-r{rank}.json      the shards rank `rank` has finished (merged on read)
    STORE/shard-r{rank}-{j:05d}.npy  float32 states (n, K, C, H, W), memory-mappable
    STORE/shard-r{rank}-{j:05d}.seeds.npy  int64 seeds (n,)

Shard j holds seeds seed_offset + [j * shard_size, min((j + 1) * shard_size, count)), whichever rank
wrote it. Every file is written to a temp file and renamed; a shard counts only once its rank's
manifest lists it, so a killed run leaves at most ignored files that the next run removes.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import KoopscopeError
from ..io.atomic import atomic_path, write_json

FORMAT = 1
MANIFEST = "manifest.json"
SETTINGS = ("teacher_sha256", "solver", "steps", "rho", "sigma_min", "sigma_max", "image_shape", "dtype",
            "shard_size", "seed_offset")
_RANK_MANIFEST = re.compile(r"manifest-r(\d+)\.json")
# The types the manifests' fields must have ([t]: a list of t).
_NUMBER = (int, float)
_HEADER_TYPES = {"teacher_sha256": str, "solver": str, "steps": int, "rho": _NUMBER, "sigma_min": _NUMBER,
                 "sigma_max": _NUMBER, "image_shape": [int], "dtype": str, "shard_size": int, "seed_offset": int,
                 "sigmas": [_NUMBER], "count": int}
_SHARD_TYPES = {"index": int, "file": str, "seeds_file": str, "count": int, "seed_start": int, "seed_stop": int}


def shard_stem(rank: int, index: int) -> str:
    return f"shard-r{rank}-{index:05d}"


def plan(count: int, shard_size: int, seed_offset: int) -> list[tuple[int, int]]:
    """Seed range [start, stop) of every shard index."""
    return [(seed_offset + a, seed_offset + min(a + shard_size, count)) for a in range(0, count, shard_size)]


def _is(value, kind) -> bool:
    """isinstance, where [t] means a list of t, and a bool is not a number."""
    if isinstance(kind, list):
        return isinstance(value, list) and all(_is(v, kind[0]) for v in value)
    return isinstance(value, kind) and not isinstance(value, bool)


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KoopscopeError(f"{path}: unreadable trajectory-store manifest ({e})") from None
    if not isinstance(obj, dict):
        raise KoopscopeError(f"{path}: not a trajectory-store manifest")
    return obj


def read_header(path: str | Path) -> dict:
    """The store's manifest.json, checked for the format version."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise KoopscopeError(f"{path} is not a trajectory store (no {MANIFEST})")
    header = _read_json(path / MANIFEST)
    if header.get("format") != FORMAT:
        fmt, version = header.get("format"), header.get("koopscope_version", "?")
        raise KoopscopeError(f"{path}: trajectory store format {fmt!r} (written by koopscope {version}) is "
                             f"not supported; this koopscope {__version__} reads format {FORMAT}")
    missing = [k for k in (*SETTINGS, "sigmas", "count") if k not in header]
    if missing:
        raise KoopscopeError(f"{path / MANIFEST}: missing fields {', '.join(missing)}")
    if wrong := [k for k, kind in _HEADER_TYPES.items() if not _is(header[k], kind)]:
        raise KoopscopeError(f"{path / MANIFEST}: fields of the wrong type: {', '.join(wrong)}")
    return header


def write_header(path: Path, header: dict) -> None:
    write_json(path / MANIFEST, {"format": FORMAT, "koopscope_version": __version__, **header})


def check_settings(path: Path, header: dict, wanted: dict) -> None:
    """Refuse to mix trajectories made with other settings into a store."""
    diff = [f"{k}={header[k]!r} (asked {wanted[k]!r})" for k in SETTINGS if header[k] != wanted[k]]
    if diff:
        raise KoopscopeError(f"{path} was generated with other settings: {'; '.join(diff)}. "
                             "Use another --out, or the store's settings")


def _plain_name(name: str) -> bool:
    """Whether `name` names a file in the store's folder (no folder part, not absolute, not '..')."""
    return name == Path(name).name and name not in ("", ".", "..")


def rank_entries(path: Path) -> dict[int, list[dict]]:
    """Finished shards per writing rank, from every manifest-r*.json."""
    out = {}
    for f in path.glob("manifest-r*.json"):
        m = _RANK_MANIFEST.fullmatch(f.name)
        if m:
            shards = _read_json(f).get("shards", [])
            if not _is(shards, [dict]) or not all(_is(e.get(k), t) for e in shards for k, t in _SHARD_TYPES.items()):
                raise KoopscopeError(f"{f}: malformed shard list (each shard needs {', '.join(_SHARD_TYPES)} of "
                                     "the right type)")
            if outside := [n for e in shards for n in (e["file"], e["seeds_file"]) if not _plain_name(n)]:
                raise KoopscopeError(f"{f}: shard file {outside[0]!r} is not a file name inside the store")
            out[int(m.group(1))] = shards
    return out


def read_shards(path: Path) -> list[dict]:
    """All finished shards, sorted by shard index; duplicate indices are an error."""
    entries = sorted((e for es in rank_entries(path).values() for e in es), key=lambda e: e["index"])
    for a, b in itertools.pairwise(entries):
        if a["index"] == b["index"]:
            raise KoopscopeError(f"{path}: shard {a['index']} is listed twice ({a['file']}, {b['file']})")
    return entries


def write_rank_manifest(path: Path, rank: int, entries: list[dict]) -> None:
    write_json(path / f"manifest-r{rank}.json", {"format": FORMAT, "rank": rank,
                                                  "shards": sorted(entries, key=lambda e: e["index"])})


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def write_shard(path: Path, rank: int, index: int, states: np.ndarray, seeds: np.ndarray) -> dict:
    """Write one shard's states and seeds atomically; return its manifest entry."""
    stem = shard_stem(rank, index)
    _save_npy(path / f"{stem}.seeds.npy", seeds.astype(np.int64))
    _save_npy(path / f"{stem}.npy", states)
    return {"index": index, "file": f"{stem}.npy", "seeds_file": f"{stem}.seeds.npy", "count": len(seeds),
            "seed_start": int(seeds[0]), "seed_stop": int(seeds[-1]) + 1}


def open_shard(path: Path, entry: dict, state_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map a shard's states and load its seeds, checking both against the manifest."""
    try:
        states = np.load(path / entry["file"], mmap_mode="r", allow_pickle=False)
        seeds = np.load(path / entry["seeds_file"], allow_pickle=False)
    except (OSError, ValueError) as e:
        raise KoopscopeError(f"{path}: shard {entry['file']} is missing or corrupt ({e})") from None
    want = (entry["count"], *state_shape)
    if states.shape != want or states.dtype != np.float32:
        raise KoopscopeError(f"{path / entry['file']}: {states.dtype}{list(states.shape)}, "
                             f"expected float32{list(want)}")
    if not np.array_equal(seeds, np.arange(entry["seed_start"], entry["seed_stop"])):
        raise KoopscopeError(f"{path / entry['seeds_file']}: seeds differ from the manifest's range")
    return states, seeds


def remove_unlisted(path: Path, listed: list[dict]) -> int:
    """Delete temp files and shard files no manifest lists (left by a killed run); return how many."""
    keep = {f for e in listed for f in (e["file"], e["seeds_file"])}
    junk = [f for f in path.iterdir() if (f.name.startswith(".") and f.name.endswith(".tmp"))
            or (f.name.startswith("shard-") and f.name not in keep)]
    for f in junk:
        f.unlink()
    return len(junk)


def being_written(path: Path) -> bool:
    """Whether a writer holds the store's lock (see `lock`); the lock file is not created."""
    try:
        f = open(path / ".lock")
    except OSError:   # none (or none we may read): no writer we can see
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)   # released when f closes
        except BlockingIOError:
            return True
    return False


@contextmanager
def lock(path: Path):
    """Hold an exclusive lock on the store while writing it (released if the process dies)."""
    with open(path / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KoopscopeError(f"{path} is being written by another process") from None
        yield
