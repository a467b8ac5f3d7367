"""Writing one script's section of ``RESULTS.md`` without touching the others'."""

from __future__ import annotations

import datetime
import os
import re
import sys
from pathlib import Path

from dmlp_plugin.io import atomic_write

__all__ = ["write_section", "run_context"]


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers (included) with
    ``section``, or append it; the file is rewritten atomically."""
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "# Benchmark results\n\n") + section + "\n"
    with atomic_write(path, "w") as fh:
        fh.write(text)


def run_context(script: str, began: datetime.datetime, load_start: str, argv: list[str] | None) -> tuple[str, str]:
    """The sentence that dates a run (cores, revision, load at start and end) and the command
    that repeats it, for a RESULTS.md section."""
    from purify_cifar10 import git_revision, load_average

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    sentence = (f"Run {began:%Y-%m-%d %H:%M} on {cores} CPU cores, dmlp-plugin at `{git_revision()}`; load average "
                f"(1/5/15 min) at start {load_start}, at end {load_average()}.")
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    return sentence, command.strip()
