"""The state of a ``--dmlp`` run, shared by :mod:`.runtime` (which sets it) and :mod:`.batches`
(which checks loaders against it), and how a run that must stop says so.

Both modules import this one and it imports neither, so the two never import each other.
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dmlp_plugin.errors import DmlpError

__all__ = ["Active", "active", "set_active", "say", "write_record", "record_loader_check", "stop_on_error",
           "CHECKED_BATCHES", "RECORDED_SAMPLES"]

#: How many batches of each pass over a watched dataset are checked.
CHECKED_BATCHES = 2
#: How many (dataset index, label) pairs a loader check keeps in the record, per part.
RECORDED_SAMPLES = 64


@dataclass
class Active:
    """An activated ``--dmlp``: the purified file, the adapter, and the alignment record."""

    method: str
    path: Path
    result: Any  # PurifyResult
    adapter: Any  # Adapter
    record_path: Path
    record: dict
    watched: dict = field(default_factory=dict)
    seen_sites: set = field(default_factory=set)


_active: Active | None = None


def active() -> Active | None:
    """The activated ``--dmlp`` state, or ``None`` when the script runs without it."""
    return _active


def set_active(state: Active | None) -> None:
    global _active
    _active = state


def say(message: str) -> None:
    print(f"[dmlp-plugin] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stop_on_error() -> Iterator[None]:
    """Turn a :class:`~dmlp_plugin.errors.DmlpError` into one line and exit status 2.

    The upstream's code sits between our calls and its ``__main__``, so an exception would
    end the run with its traceback and status 1, or be swallowed by an upstream
    ``except Exception`` and training would go on. ``SystemExit`` passes through those
    blocks and stops the run before it trains on bad labels. ``DMLP_DEBUG=1`` prints the
    traceback first; the run stops all the same.
    """
    try:
        yield
    except DmlpError as exc:
        from dmlp_plugin.failures import debug_enabled

        if debug_enabled():
            traceback.print_exc()
        say(f"error: {exc}")
        raise SystemExit(2) from None


def write_record() -> None:
    """Rewrite the alignment record (after every event, so it is whole if the run stops)."""
    state = _active
    if state is None:
        return
    from dmlp_plugin.io import atomic_write

    with atomic_write(state.record_path, "w") as fh:
        json.dump(state.record, fh, indent=1)


def record_loader_check(part: str, indices: np.ndarray, labels: np.ndarray) -> None:
    """Record one checked batch: its size, and a few of the (dataset index, label) pairs it carried."""
    state = _active
    if state is None:
        return
    for entry in state.record["loader_checks"]:
        if entry["part"] == part:
            break
    else:
        entry = {"part": part, "samples_checked": 0, "batches_checked": 0, "samples": []}
        state.record["loader_checks"].append(entry)
    entry["samples_checked"] += int(len(labels))
    entry["batches_checked"] += 1
    room = RECORDED_SAMPLES - len(entry["samples"])
    entry["samples"].extend([int(i), int(y)] for i, y in zip(indices[:room], labels[:room]))
    write_record()
