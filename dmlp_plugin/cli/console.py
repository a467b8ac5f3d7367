"""Shared rich consoles for the CLI (progress bars come from :mod:`dmlp_plugin.progress`)."""

from __future__ import annotations

from rich.console import Console

from ..progress import make_progress

__all__ = ["console", "err_console", "make_progress"]

console = Console()
err_console = Console(stderr=True)
