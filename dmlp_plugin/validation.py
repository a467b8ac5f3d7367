"""Input checks shared by the API and the CLI, with messages that name the problem."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError, LabelError, ShapeError
from .io import load_array

__all__ = ["as_features", "as_labels", "check_trusted_indices", "infer_num_classes",
           "check_classes_present"]


def _load_if_path(value: Any, what: str) -> Any:
    import os

    if isinstance(value, (str, os.PathLike)):
        return load_array(value, what=what)
    return value


def _to_numpy(value: Any, what: str) -> np.ndarray:
    value = _load_if_path(value, what)
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} cannot be read as an array: {exc}") from exc


def as_features(value: Any, what: str = "features") -> np.ndarray:
    """A finite ``(N, d)`` float32 array from an array, tensor or feature file."""
    arr = _to_numpy(value, what)
    if arr.dtype == object or arr.dtype.kind not in "fiu":
        raise InputError(f"{what} must be a numeric (float) array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ShapeError(f"{what} must be 2-D (samples, dims), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ShapeError(f"{what} is empty (shape {arr.shape})")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(1))
        kind = "NaN" if np.isnan(arr[bad_rows[0]]).any() else "inf"
        raise InputError(
            f"{what} contain NaN or inf values in {len(bad_rows)} row(s) "
            f"(first: row {bad_rows[0]} has {kind}); clean or drop these samples first")
    return arr


def as_labels(value: Any, what: str = "labels", *, num_classes: int | None = None,
              length: int | None = None) -> np.ndarray:
    """A 1-D int64 array of labels in ``[0, num_classes)``, from an array, tensor or label file.

    The one rule for labels everywhere (the API, the CLI, adapters, noise, the probe):
    integers, or floats that are whole numbers (as ``.txt``/``.csv`` label files load);
    an ``(N, 1)`` column is accepted as ``(N,)``; ``length``, when given, is checked.
    """
    arr = _to_numpy(value, what)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ShapeError(f"{what} must be 1-D (one class index per sample), got shape {arr.shape}")
    if length is not None and len(arr) != length:
        raise ShapeError(f"{what} has {len(arr)} entries but there are {length} samples")
    if arr.size == 0:  # np.asarray([]) is float64: an empty list is not a dtype error
        arr = arr.astype(np.int64)
    whole = arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all()
    if arr.dtype == bool or (arr.dtype.kind not in "iu" and not whole):
        raise LabelError(f"{what} must be integer class indices, got dtype {arr.dtype}"
                         + (" with fractional values" if arr.dtype.kind == "f" else ""))
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise LabelError(f"{what} contain negative values (min {arr.min()} at index {int(arr.argmin())})")
    if num_classes is not None and arr.size and arr.max() >= num_classes:
        raise LabelError(
            f"{what} contain class {arr.max()} (at index {int(arr.argmax())}) but num_classes is "
            f"{num_classes}; labels must lie in [0, {num_classes})")
    return arr


def infer_num_classes(num_classes: int | None, *label_arrays: np.ndarray,
                      names: tuple[str, ...] = ()) -> int:
    """``num_classes`` if given (checked against the labels), else ``max label + 1``."""
    tops = [int(a.max()) if a.size else -1 for a in label_arrays]
    top = max(tops, default=-1) + 1
    holder = names[tops.index(top - 1)] if names and tops else "the labels"
    if num_classes is None:
        if top < 2:
            raise LabelError("labels hold fewer than 2 classes; pass num_classes explicitly")
        if names and len(tops) > 1 and tops[0] < top - 1:
            # A trusted label above every training label is a typo far more often than a class
            # no training sample was given; say so instead of reporting classes "missing".
            raise LabelError(
                f"{holder} contain class {top - 1}, but {names[0]} only go up to class {tops[0]}; "
                "if the training labels really lack the top classes, pass num_classes (--num-classes)")
        return top
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise LabelError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if top > num_classes:
        raise LabelError(f"num_classes={num_classes} conflicts with {holder}, which contain class {top - 1}")
    return int(num_classes)


def check_trusted_indices(indices: Any, n: int) -> np.ndarray:
    """Trusted-set indices: integers in ``[0, n)``, no duplicates, not empty."""
    arr = _to_numpy(indices, "val_indices")
    if arr.ndim != 1:
        raise ShapeError(f"val_indices must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError("the trusted set is empty: val_indices has no entries")
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise InputError(f"val_indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    out = (arr < 0) | (arr >= n)
    if out.any():
        raise InputError(
            f"val_indices has {int(out.sum())} index(es) outside [0, {n}) "
            f"(first: {int(arr[out][0])}); they must index the training set of {n} samples")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise InputError(f"val_indices has {len(dup)} duplicated index(es) (first: {int(dup[0])})")
    return arr


def check_classes_present(val_labels: np.ndarray, num_classes: int) -> None:
    """Every class must appear in the trusted set, or its predictions have no target."""
    missing = np.setdiff1d(np.arange(num_classes), val_labels)
    if missing.size:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if missing.size > 10 else "")
        raise LabelError(
            f"the trusted set has no sample of class(es) {shown} ({missing.size} of {num_classes} "
            f"classes missing); DMLP needs at least one clean example of every class")
