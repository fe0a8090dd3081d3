"""Run a plan's stages, skipping those that are current.

A stage is current when the manifest (results/reproduce.json) holds, under its name, the key it would have now
and every output it recorded is on disk with the recorded sha256. The key hashes the stage's command (paths
written relative to the layout), the content of its inputs (earlier stages' outputs or given files, folders
file by file) and its code version: the content of the stage's entry file and of every module it can import
(``sources.imported_files``). So an edited model, store, script or library module reruns the stages that
depend on it and nothing else. A stage that fails leaves the
manifest as it was (its outputs are written atomically by the stage itself) and stops the run; rerunning
resumes at it, and a training stage continues its checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import KoopscopeError
from ..io.meta import sha256
from .sources import imported_files
from .stages import ROOT, Layout, Stage

MANIFEST = "reproduce.json"


@dataclass
class Status:
    stage: Stage
    key: str | None      # None when an input is missing (made by an earlier stage that has not run yet)
    current: bool


def _file_hash(path: Path, cache: dict) -> str:
    """``io.meta.sha256`` of a file, once per (path, size, mtime) within a run."""
    st = path.stat()
    tag = (str(path), st.st_size, st.st_mtime_ns)
    if tag not in cache:
        cache[tag] = sha256(path)
    return cache[tag]


def _files_hash(files, base: Path, cache: dict) -> str:
    """sha256 of files by their names relative to ``base`` and their contents, in sorted order."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f"{f.relative_to(base)}\0{_file_hash(f, cache)}\0".encode())
    return h.hexdigest()


def content_hash(path: Path, cache: dict) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    if path.is_file():
        return _file_hash(path, cache)
    return _files_hash((p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")), path, cache)


def code_version(stage: Stage, cache: dict) -> str:
    """sha256 of the files the stage runs: its entry and what that imports (each file parsed once per run)."""
    return _files_hash(imported_files(stage.code, ROOT, cache.setdefault("imports", {})), ROOT, cache)


def _portable(arg: str, lay: Layout) -> str:
    """An argument with the layout's folders and the checkout written symbolically (keys survive a move); the
    longest folder first, so a checkout inside the runs folder is still {root}."""
    folders = {"runs": lay.runs, "figures": lay.figures, "results": lay.results, "root": ROOT}
    for name, folder in sorted(folders.items(), key=lambda kv: -len(str(kv[1]))):
        arg = arg.replace(str(folder), "{" + name + "}")
    return arg


def _keyed(argv: list[str]) -> list[str]:
    """The arguments that key a stage: all but ``--threads N``, which sets how fast it runs, not what it makes (up to
    float rounding), so a run on two threads leaves the stages current for one."""
    drop = {i + k for i, a in enumerate(argv) if a == "--threads" for k in (0, 1)}
    return [a for i, a in enumerate(argv) if i not in drop]


def stage_key(stage: Stage, lay: Layout, cache: dict) -> str | None:
    h = hashlib.sha256(f"{stage.name}\0{code_version(stage, cache)}\0".encode())
    h.update("\0".join(_portable(a, lay) for a in _keyed(stage.argv)).encode())
    for p in stage.inputs:
        if not p.exists():
            return None
        h.update(f"\0{_portable(str(p), lay)}\0{content_hash(p, cache)}".encode())
    return h.hexdigest()


def read_manifest(lay: Layout) -> dict:
    import json

    path = lay.results / MANIFEST
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        raise KoopscopeError(f"{path} is not valid JSON: delete it to rerun every stage") from None


def status(stage: Stage, lay: Layout, manifest: dict, cache: dict) -> Status:
    """The stage's key now and whether its recorded outputs are current."""
    key = stage_key(stage, lay, cache)
    rec = manifest.get(stage.name, {})
    current = key is not None and rec.get("key") == key and all(
        p.exists() and rec.get("outputs", {}).get(_portable(str(p), lay)) == content_hash(p, cache)
        for p in stage.outputs)
    return Status(stage, key, current)


def statuses(stages: list[Stage], lay: Layout) -> list[Status]:
    """Every stage's status (one manifest read and each file hashed once for all)."""
    cache: dict = {}
    manifest = read_manifest(lay)
    return [status(s, lay, manifest, cache) for s in stages]


def run_stage(stage: Stage, lay: Layout, threads: int) -> float:
    """Run one stage's command, its output in logs/<name>.log; the seconds it took."""
    lay.logs.mkdir(parents=True, exist_ok=True)
    log = lay.logs / f"{stage.name}.log"
    argv = [sys.executable, *stage.argv]
    if stage.resume is not None and stage.resume.exists():
        argv.append("--resume")
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(log, "w") as f:
        f.write(" ".join(argv) + "\n")
        f.flush()
        rc = subprocess.run(argv, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        raise KoopscopeError(f"stage {stage.name} failed (exit {rc}): {lines[-1] if lines else 'no output'} "
                             f"[log: {log}]")
    missing = [str(p) for p in stage.outputs if not p.exists()]
    if missing:
        raise KoopscopeError(f"stage {stage.name} finished without writing {', '.join(missing)} [log: {log}]")
    return time.perf_counter() - start


def reproduce(stages: list[Stage], lay: Layout, only: list[str] | None = None, force: bool = False,
              threads: int = 1, progress: bool = True) -> list[tuple[str, str, float]]:
    """Run the stages that are not current (of ``only``, when given); (name, ran|current, seconds) for each."""
    from ..io.atomic import write_json
    from ..progress import bars

    names = [s.name for s in stages]
    unknown = [n for n in only or [] if n not in names]
    if unknown:
        raise KoopscopeError(f"unknown stage {', '.join(unknown)}; stages: {', '.join(names)}")
    chosen = [s for s in stages if not only or s.name in only]
    cache: dict = {}
    manifest = read_manifest(lay)
    report = []
    with bars(progress) as bar:
        task = bar.add_task("reproduce", total=len(chosen))
        for stage in chosen:
            now = status(stage, lay, manifest, cache)
            if now.current and not force:
                report.append((stage.name, "current", 0.0))
                bar.advance(task)
                continue
            if now.key is None:
                missing = next(str(p) for p in stage.inputs if not p.exists())
                raise KoopscopeError(f"stage {stage.name} needs {missing}, which an earlier stage makes: "
                                     f"run it first (or drop --only)")
            bar.update(task, description=f"{stage.name}: {stage.about}")
            seconds = run_stage(stage, lay, threads)
            entry = {"key": now.key, "seconds": round(seconds, 1),   # a stage leaves its inputs be
                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                     "outputs": {_portable(str(p), lay): content_hash(p, cache) for p in stage.outputs}}
            # read again: a second run with other --only stages may have recorded its own meanwhile
            manifest = {**read_manifest(lay), stage.name: entry}
            lay.results.mkdir(parents=True, exist_ok=True)
            write_json(lay.results / MANIFEST, manifest)
            report.append((stage.name, "ran", seconds))
            bar.advance(task)
    return report
