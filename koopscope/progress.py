"""The one progress display koopscope draws: rich, on stderr, gone when done, nothing when disabled."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def bars(enabled: bool = True):
    """A rich ``Progress`` (description, bar, done/total, time left); add tasks to it inside ``with``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True, disable=not enabled)


def track(items: Iterable, description: str, enabled: bool = True, total: int | None = None) -> Iterator:
    """Yield ``items``, with a progress bar when ``enabled``."""
    if not enabled:
        yield from items
        return
    with bars() as progress:
        yield from progress.track(items, total=total, description=description)
