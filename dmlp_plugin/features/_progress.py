"""One progress-bar helper for the long loops of the feature code."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

__all__ = ["progress_bar", "Advance"]

# called with the amount of work just done, and optionally a status text
Advance = Callable[..., None]


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str, *, completed: int = 0) -> Iterator[Advance | None]:
    """A rich bar on stderr (``make_progress``) while the block runs; yields ``advance(n, status="")``,
    or None when disabled so loops skip the bookkeeping."""
    if not enabled:
        yield None
        return
    from ..cli.console import make_progress

    bar = make_progress()
    task = bar.add_task(description, total=total, completed=completed, status="")
    with bar:
        yield lambda n, status="": bar.update(task, advance=n, status=status)
