"""Drawing the trusted set: a few clean samples carved out of the training set.

The paper's CIFAR protocol takes 1,000 training samples with their clean labels as the
trusted set (``val_indices``/``val_labels`` of :func:`~dmlp_plugin.purify_dataset`).
Every class must appear in it, or its predictions have no target.

Without clean labels, :func:`draw_to_label` picks the rows a person should verify: as
many of every given label, chosen at random within it. Random, because the purifier
counts the noise transition on the trusted rows: rows picked for being easy (or
suspicious) would make the given labels look more (or less) reliable than they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError, LabelError
from .validation import as_labels, exactly_one, shown

__all__ = ["draw_trusted_set", "draw_to_label"]


def draw_trusted_set(clean_labels: Any, *, per_class: int | None = None, size: int | None = None,
                     seed: int = 0) -> np.ndarray:
    """Indices of a trusted set, drawn without replacement from ``clean_labels``.

    Parameters
    ----------
    clean_labels
        ``(N,)`` clean labels of the training set (array, tensor or label file).
    per_class
        Draw exactly this many samples of every class (balanced, as the official code).
    size
        Or draw this many in all, uniformly; every class must still appear.
    seed
        Seed of the draw; the same seed gives the same set.

    Returns
    -------
    np.ndarray
        ``(V,)`` int64 sorted indices; ``clean_labels[indices]`` are the trusted labels.
    """
    labels = as_labels(clean_labels, "clean_labels")
    exactly_one(per_class=per_class, size=size)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    if per_class is not None:
        if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
            raise InputError(f"{shown('per_class')} must be a count >= 1, got {per_class!r}")
        short = classes[counts < per_class]
        if short.size:
            raise LabelError(f"class {int(short[0])} has only {int(counts[classes == short[0]][0])} samples, "
                             f"fewer than the {per_class} per class asked for")
        picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
        return np.sort(np.concatenate(picks)).astype(np.int64)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size < len(labels):
        raise InputError(f"{shown('size')} must be a count in [1, {len(labels)}), the training set's size; got {size!r}")
    indices = np.sort(rng.choice(len(labels), size, replace=False)).astype(np.int64)
    missing = np.setdiff1d(classes, labels[indices])
    if missing.size:
        raise LabelError(f"a random trusted set of {size} has no sample of class(es) "
                         f"{', '.join(map(str, missing[:10]))}; draw a larger one, or use per_class (--per-class)")
    return indices


def draw_to_label(given_labels: Any, count: int, *, seed: int = 0) -> np.ndarray:
    """Indices of ``count`` rows for a person to verify, balanced over the given labels.

    Every class present among the given labels gets ``count // C`` rows, and ``count % C``
    classes drawn at random get one more; within a class, the rows are drawn uniformly
    without replacement. Balanced so that rare classes still get verified examples (every
    class needs one); uniform within a class so that the verified rows are an unbiased
    sample of that given label, which the transition counted on them assumes.

    Parameters
    ----------
    given_labels
        ``(N,)`` given (possibly noisy) labels (array, tensor or label file).
    count
        Rows to draw in all; at least one per class present.
    seed
        Seed of the draw; the same seed gives the same rows.

    Returns
    -------
    np.ndarray
        ``(count,)`` int64 sorted indices.
    """
    labels = as_labels(given_labels, "given_labels")
    classes, counts = np.unique(labels, return_counts=True)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < len(classes):
        raise InputError(f"{shown('count')} must be a count of at least {len(classes)} (one row for each of "
                         f"the {len(classes)} given classes), got {count!r}")
    if count > len(labels):
        raise InputError(f"{shown('count')} is {count} but there are only {len(labels)} rows")
    rng = np.random.default_rng(seed)
    share = np.full(len(classes), count // len(classes))
    share[rng.choice(len(classes), count % len(classes), replace=False)] += 1
    short = np.flatnonzero(counts < share)
    if short.size:
        k = short[0]
        raise LabelError(f"given class {int(classes[k])} has only {int(counts[k])} rows, fewer than the "
                         f"{int(share[k])} asked of every class; ask for fewer rows")
    picks = [rng.choice(np.flatnonzero(labels == c), n, replace=False) for c, n in zip(classes, share)]
    return np.sort(np.concatenate(picks)).astype(np.int64)
