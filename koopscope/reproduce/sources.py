"""The source files a stage runs: its entry file and every module it can import, directly or not.

Every import statement counts, the ones inside functions too (koopscope imports torch and most of its own
modules lazily), and so do the parent packages' ``__init__.py`` (they run on import). A module that calls
``import_module`` (a package's lazy ``__getattr__``) counts as importing every module of its package. Only
files under the package root and the entry's own folder (an analyses/ script importing a sibling) are
followed; third-party packages are pinned by the install, not hashed.
"""

from __future__ import annotations

import ast
from pathlib import Path


def _module_file(name: str, roots: list[Path]) -> Path | None:
    """The file of a dotted module name under one of ``roots`` (a module or a package's __init__)."""
    rel = Path(*name.split("."))
    for root in roots:
        for path in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
            if path.is_file():
                return path
    return None


def _module_name(path: Path, roots: list[Path]) -> str:
    for root in roots:
        if path.is_relative_to(root):
            parts = path.relative_to(root).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(f"{path} is under none of {roots}")


def _imported_names(path: Path, module: str) -> set[str]:
    """Dotted names the file imports (``from a import b`` gives a and a.b: b may be a submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and "import_module" in (getattr(node.func, "id", None),
                                                                 getattr(node.func, "attr", None)):
            names |= {f"{package}.{p.stem}" for p in path.parent.glob("*.py")}
    return names


def imported_files(entry: Path, package_root: Path, memo: dict | None = None) -> set[Path]:
    """``entry`` and every file of the package under ``package_root`` (or beside ``entry``) it can import.

    ``memo`` keeps each file's imports across calls (one run's stages share most of their modules).
    """
    memo = {} if memo is None else memo
    roots = [package_root.resolve(), entry.resolve().parent]
    todo, seen = [entry.resolve()], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        key = (path, *roots)
        if key not in memo:
            memo[key] = _imported_files_of(path, roots)
        todo += memo[key] - seen
    return seen


def _imported_files_of(path: Path, roots: list[Path]) -> set[Path]:
    """The files one file imports directly, with the parent packages' __init__.py (they run first)."""
    found = set()
    for name in _imported_names(path, _module_name(path, roots)):
        parts = name.split(".")
        found |= {_module_file(".".join(parts[:i]), roots) for i in range(1, len(parts) + 1)}
    return found - {None}
