"""Input checks shared by the API, the CLI, the adapters, noise and the probe.

Every rule about what a user passes in lives here, once, with a message that names the
problem. Messages call an argument by its Python name (``val_indices``) unless the
caller set other names with :func:`argument_names`: the CLI does, so its users read the
flag they typed (``--val-indices``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .argument_names import argument_names, shown
from .errors import InputError, LabelError, ShapeError
from .io import load_array

__all__ = ["as_features", "as_labels", "check_trusted_indices", "infer_num_classes",
           "check_classes_present", "exactly_one", "argument_names", "shown", "PurifyInputs",
           "purify_inputs"]

def exactly_one(**values: Any) -> str:
    """The name of the one argument that is not None; an :class:`InputError` otherwise."""
    given = [name for name, value in values.items() if value is not None]
    if len(given) != 1:
        names = [shown(name) for name in values]
        listed = ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]
        raise InputError(f"pass exactly one of {listed}"
                         + (f" (got {len(given)}: {', '.join(shown(g) for g in given)})" if given else ""))
    return given[0]


def _load_if_path(value: Any, what: str, rows: int | None = None) -> Any:
    import os

    if isinstance(value, (str, os.PathLike)):
        return load_array(value, what=what, rows=rows)
    return value


def _to_numpy(value: Any, what: str, rows: int | None = None) -> np.ndarray:
    value = _load_if_path(value, what, rows)
    what = shown(what)
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} cannot be read as an array: {exc}") from exc


def as_features(value: Any, what: str = "features") -> np.ndarray:
    """A finite ``(N, d)`` float array from an array, tensor or feature file.

    float32 and float16 arrays are kept as they are, without a copy, so a memory-mapped
    ``.npy`` stays on disk (the engine reads it in chunks under ``max_memory``); other
    dtypes become float32. The finiteness check runs in blocks of rows, in bounded memory.
    """
    arr = _to_numpy(value, what)
    what = shown(what)
    if arr.dtype == object or arr.dtype.kind not in "fiu":
        raise InputError(f"{what} must be a numeric (float) array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ShapeError(f"{what} must be 2-D (samples, dims), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ShapeError(f"{what} is empty (shape {arr.shape})")
    if arr.dtype not in (np.float32, np.float16):
        arr = arr.astype(np.float32)
    elif not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    bad_rows = _nonfinite_rows(arr)
    if len(bad_rows):
        kind = "NaN" if np.isnan(arr[bad_rows[0]]).any() else "inf"
        raise InputError(
            f"{what} contain NaN or inf values in {len(bad_rows)} row(s) "
            f"(first: row {bad_rows[0]} has {kind}); clean or drop these samples first")
    return arr


def _nonfinite_rows(arr: np.ndarray, block_bytes: int = 64 << 20) -> np.ndarray:
    """Rows holding a NaN or inf, read ``block_bytes`` at a time."""
    step = max(1, block_bytes // max(1, arr.shape[1] * arr.itemsize))
    bad = [start + np.flatnonzero(~np.isfinite(arr[start:start + step]).all(1))
           for start in range(0, arr.shape[0], step)]
    return np.concatenate(bad)


def as_labels(value: Any, what: str = "labels", *, num_classes: int | None = None,
              length: int | None = None) -> np.ndarray:
    """A 1-D int64 array of labels in ``[0, num_classes)``, from an array, tensor or label file.

    The one rule for labels everywhere (the API, the CLI, adapters, noise, the probe):
    integers, or floats that are whole numbers (as ``.txt``/``.csv`` label files load);
    an ``(N, 1)`` column is accepted as ``(N,)``; ``length``, when given, is checked (and a
    text label file larger than ``length`` labels can take is refused before it is read).
    """
    arr = _to_numpy(value, what, rows=length)
    what = shown(what)
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
    names = tuple(shown(name) for name in names)
    holder = names[tops.index(top - 1)] if names and tops else "the labels"
    option = shown("num_classes")
    if num_classes is None:
        if top < 2:
            raise LabelError(f"labels hold fewer than 2 classes; pass {option} explicitly")
        if names and len(tops) > 1 and tops[0] < top - 1:
            # A trusted label above every training label is a typo far more often than a class
            # no training sample was given; say so instead of reporting classes "missing".
            raise LabelError(
                f"{holder} contain class {top - 1}, but {names[0]} only go up to class {tops[0]}; "
                f"if the training labels really lack the top classes, pass {option}")
        return top
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise LabelError(f"{option} must be an integer >= 2, got {num_classes!r}")
    if top > num_classes:
        raise LabelError(f"{option}={num_classes} conflicts with {holder}, which contain class {top - 1}"
                         f"; labels must lie in [0, {num_classes})")
    return int(num_classes)


def check_trusted_indices(indices: Any, n: int, what: str = "val_indices") -> np.ndarray:
    """Trusted-set indices: integers in ``[0, n)``, no duplicates, not empty."""
    arr = _to_numpy(indices, what)
    what = shown(what)
    if arr.ndim != 1:
        raise ShapeError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"the trusted set is empty: {what} has no entries")
    whole = arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all()
    if arr.dtype == bool or (arr.dtype.kind not in "iu" and not whole):
        raise InputError(f"{what} must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    out = (arr < 0) | (arr >= n)
    if out.any():
        raise InputError(
            f"{what} has {int(out.sum())} index(es) outside [0, {n}) "
            f"(first: {int(arr[out][0])}); they must index the training set of {n} samples")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise InputError(f"{what} has {len(dup)} duplicated index(es) (first: {int(dup[0])})")
    return arr


def check_classes_present(val_labels: np.ndarray, num_classes: int) -> None:
    """Every class must appear in the trusted set, or its predictions have no target."""
    missing = np.setdiff1d(np.arange(num_classes), val_labels)
    if missing.size:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if missing.size > 10 else "")
        raise LabelError(
            f"the trusted set has no sample of class(es) {shown} ({missing.size} of {num_classes} "
            f"classes missing); DMLP needs at least one clean example of every class")


@dataclass(frozen=True)
class PurifyInputs:
    """Everything :func:`~dmlp_plugin.purify_dataset` purifies, checked and aligned.

    Row indices are into ``features``. Under the CIFAR protocol ``trusted`` holds the
    trusted rows (``val_features`` and ``val_given`` are their features and given labels);
    with a separate trusted set ``trusted`` is empty and ``val_given`` is None.
    """

    features: np.ndarray             # (N, d) float32 or float16, possibly memory-mapped
    given: np.ndarray                # (N,) int64
    val_labels: np.ndarray           # (V,) int64, clean
    num_classes: int
    trusted: np.ndarray              # (V,) or (0,) int64
    train_rows: np.ndarray           # the rows to purify, ascending
    val_features: np.ndarray         # (V, d)
    val_given: np.ndarray | None     # (V,) given labels of the trusted rows
    features_view2: np.ndarray | None = None
    val_features_view2: np.ndarray | None = None
    clean: np.ndarray | None = None  # (N,) true labels, for reporting only

    @property
    def num_samples(self) -> int:
        return self.features.shape[0]


def purify_inputs(features: Any, labels: Any, *, val_labels: Any, val_indices: Any = None,
                  val_features: Any = None, num_classes: int | None = None, clean_labels: Any = None,
                  features_view2: Any = None, val_features_view2: Any = None,
                  class_names: list[str] | None = None) -> PurifyInputs:
    """Check and align the inputs of a purification (the rules of
    :func:`~dmlp_plugin.purify_dataset`'s Raises section)."""
    if labels is None:
        raise InputError(f"{shown('labels')} are required (they default to dataset.targets only for a "
                         "dataset input)")
    feats = as_features(features)
    n = feats.shape[0]
    given = as_labels(labels, "labels")
    if len(given) != n:
        raise ShapeError(f"{shown('features')} have {n} rows but {shown('labels')} have {len(given)} "
                         "entries; they must align")
    if val_labels is None:
        raise InputError(f"a trusted set is required: pass {shown('val_labels')} with {shown('val_indices')} "
                         f"or {shown('val_features')}")
    form = exactly_one(val_indices=val_indices, val_features=val_features)
    val_y = as_labels(val_labels, "val_labels")
    if len(val_y) == 0:
        raise InputError(f"the trusted set is empty: {shown('val_labels')} has no entries")
    clean = None if clean_labels is None else as_labels(clean_labels, "clean_labels", length=n)
    num_classes = infer_num_classes(num_classes, given, val_y, *([clean] if clean is not None else []),
                                    names=("labels", "val_labels", "clean_labels"))
    if class_names is not None and len(class_names) != num_classes:
        raise ShapeError(f"class_names has {len(class_names)} names but there are {num_classes} classes")
    feats2 = None if features_view2 is None else as_features(features_view2, "features_view2")
    if feats2 is not None and len(feats2) != n:
        raise ShapeError(f"{shown('features_view2')} has {len(feats2)} rows but {shown('features')} have {n}")
    if form == "val_indices":
        trusted = check_trusted_indices(val_indices, n)
        if len(trusted) != len(val_y):
            raise ShapeError(f"{shown('val_indices')} has {len(trusted)} entries but {shown('val_labels')} "
                             f"has {len(val_y)}; they must align")
        if len(trusted) >= n:
            raise InputError(f"the trusted set covers all {n} samples: nothing is left to purify")
        train_mask = np.ones(n, bool)
        train_mask[trusted] = False
        vfeats, val_given = feats[trusted].astype(np.float32), given[trusted]
        vfeats2 = None if feats2 is None else feats2[trusted].astype(np.float32)
        train_rows = np.flatnonzero(train_mask)
    else:
        trusted, train_rows, val_given = np.zeros(0, np.int64), np.arange(n), None
        vfeats = as_features(val_features, "val_features").astype(np.float32)
        if vfeats.shape[1] != feats.shape[1]:
            raise ShapeError(f"{shown('val_features')} have {vfeats.shape[1]} dims but {shown('features')} "
                             f"have {feats.shape[1]}")
        if len(vfeats) != len(val_y):
            raise ShapeError(f"{shown('val_features')} has {len(vfeats)} rows but {shown('val_labels')} has "
                             f"{len(val_y)}; they must align")
        vfeats2 = None
        if feats2 is not None:
            if val_features_view2 is None:
                raise InputError(f"{shown('features_view2')} needs {shown('val_features_view2')} when the "
                                 "trusted set is separate")
            vfeats2 = as_features(val_features_view2, "val_features_view2").astype(np.float32)
    check_classes_present(val_y, num_classes)
    return PurifyInputs(features=feats, given=given, val_labels=val_y, num_classes=num_classes,
                        trusted=trusted, train_rows=train_rows, val_features=vfeats, val_given=val_given,
                        features_view2=feats2, val_features_view2=vfeats2, clean=clean)
