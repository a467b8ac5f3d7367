"""Writing one script's section of ``RESULTS.md`` without touching the others'.

``driver.Section`` writes through it; ``docs/reproduce.md`` imports it to write the
``dmlp reproduce`` section.
"""

from __future__ import annotations

import re
from pathlib import Path

from dmlp_plugin.io import atomic_write

__all__ = ["write_section"]


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
