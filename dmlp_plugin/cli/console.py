"""Shared rich consoles and progress-bar factory for the CLI and long-running APIs."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

__all__ = ["console", "err_console", "make_progress"]

console = Console()
err_console = Console(stderr=True)


def make_progress(*, transient: bool = False, console_: Console | None = None) -> Progress:
    """A rich progress bar with the columns used across dmlp-plugin."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console_ or err_console,
        transient=transient,
    )
