"""What a purified-label file must hold before an upstream trains on it.

``--dmlp`` reads a file the user names; a damaged or forged one must stop the run at
argument parsing, not inside training (an out-of-range label indexes past a loss's
classes, a NaN soft label poisons every step). :func:`check_purified` checks every array
the integrations use, a block of rows at a time so a large file needs no second copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dmlp_plugin.errors import CorruptFileError

__all__ = ["check_purified", "SUM_TOLERANCE"]

#: How far a soft-label row's sum may be from 1 (float32 rounding of C terms is far smaller).
SUM_TOLERANCE = 1e-3
# Rows checked at a time: bounds the temporaries of the soft-label checks.
_BLOCK_ROWS = 1 << 16


def _fail(path: Path, message: str) -> CorruptFileError:
    return CorruptFileError(f"{path}: {message}; this is not a file `dmlp purify` wrote, or it was altered")


def _check_labels(path: Path, name: str, values: Any, n: int, c: int) -> None:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise _fail(path, f"{name} has shape {arr.shape}, expected ({n},)")
    if not np.issubdtype(arr.dtype, np.integer):
        raise _fail(path, f"{name} are {arr.dtype}, not integers")
    bad = (arr < 0) | (arr >= c)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{int(bad.sum())} of {n} {name} are outside [0, {c}) (first: {int(arr[first])} "
                    f"at row {first})")


def _check_soft(path: Path, soft: Any, n: int, c: int) -> None:
    soft = np.asarray(soft)
    if soft.shape != (n, c):
        raise _fail(path, f"soft_labels has shape {soft.shape}, expected ({n}, {c})")
    if not np.issubdtype(soft.dtype, np.floating):
        raise _fail(path, f"soft_labels are {soft.dtype}, not floats")
    for start in range(0, n, _BLOCK_ROWS):
        block = soft[start:start + _BLOCK_ROWS].astype(np.float64)
        problems = {
            "not finite (NaN or infinite)": ~np.isfinite(block).all(1),
            "negative": (block < 0).any(1),
            "not summing to 1": np.abs(block.sum(1) - 1) > SUM_TOLERANCE,
        }
        for what, rows in problems.items():
            if rows.any():
                first = start + int(np.flatnonzero(rows)[0])
                raise _fail(path, f"soft_labels rows are {what} (first: row {first})")


def check_purified(result: Any, path: Path) -> None:
    """Refuse a :class:`~dmlp_plugin.result.PurifyResult` an upstream must not train on.

    The class count is a positive integer; ``labels`` and ``given_labels`` are ``(N,)``
    integers in ``[0, C)``; ``soft_labels`` is ``(N, C)``, finite, non-negative, each row
    summing to 1; ``trusted_indices`` are rows of the file.

    Raises
    ------
    CorruptFileError
        Naming the file, the array and the first offending row.
    """
    c = result.num_classes
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
        raise _fail(path, f"num_classes is {c!r}, not a positive integer")
    c = int(c)
    labels = np.asarray(result.labels)
    if labels.ndim != 1:
        raise _fail(path, f"labels has shape {labels.shape}, expected one label per row")
    n = len(labels)
    _check_labels(path, "labels", labels, n, c)
    _check_labels(path, "given_labels", result.given_labels, n, c)
    _check_soft(path, result.soft_labels, n, c)
    trusted = np.asarray(result.trusted_indices)
    if trusted.size:
        _check_labels(path, "trusted_indices", trusted.reshape(-1), trusted.size, n)
