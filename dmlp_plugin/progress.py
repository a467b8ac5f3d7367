"""Progress bars for long work (purification epochs, feature extraction, k-means, SimCLR).

The library draws them on stderr with rich; the CLI uses the same factory, so every bar
looks alike. They live here, not in ``cli/``, because the library must never import the CLI.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["make_progress", "progress_bar", "Advance"]

# called with the amount of work just done, and optionally a status text
Advance = Callable[..., None]


def make_progress(*, transient: bool = False, console: "Console | None" = None) -> "Progress":
    """A rich progress bar on stderr (or ``console``) with the columns used across dmlp-plugin."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console or Console(stderr=True),
        transient=transient,
    )


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str, *, completed: int = 0) -> Iterator[Advance | None]:
    """A bar while the block runs; yields ``advance(n, status="")``, or None when disabled so
    loops skip the bookkeeping."""
    if not enabled:
        yield None
        return
    bar = make_progress()
    task = bar.add_task(description, total=total, completed=completed, status="")
    with bar:
        yield lambda n, status="": bar.update(task, advance=n, status=status)
