"""The one progress bar koopscope draws (rich, on stderr, gone when done)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def track(items: Iterable, description: str, enabled: bool = True, total: int | None = None) -> Iterator:
    """Yield ``items``, with a progress bar when ``enabled``."""
    if not enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True, console=Console(stderr=True))
