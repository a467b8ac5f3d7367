"""Purified labels in cleanlab Datalab's label-issue columns, for its users' review tools.

``Datalab.get_issues("label")`` returns one row per sample, in dataset order, with the
columns ``is_label_issue`` (bool), ``label_score`` (float: the model's probability of the
given label, Datalab's default "self_confidence"; low means a likely error),
``given_label`` and ``predicted_label`` (ints). :func:`write_datalab_csv` writes a
purification's labels with the same columns, in the same order, one row per sample and no
index column, so ``pandas.read_csv(path)`` gives the frame a Datalab user already handles
(and FiftyOne's cleanlab recipes read), with the sample index as its row index:

- ``is_label_issue``: the purified label differs from the given one (``result.changed``);
- ``label_score``: ``result.label_quality``, the purifier's probability of the given label;
- ``given_label``: ``result.given_labels``; ``predicted_label``: ``result.labels``.

It takes plain arrays, not a :class:`~dmlp_plugin.result.PurifyResult`: the result's
``export(path, "datalab")`` calls it, so it must not import the result back.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .errors import CorruptFileError, MissingFileError
from .io import atomic_write

__all__ = ["DATALAB_COLUMNS", "write_datalab_csv", "read_datalab_csv"]

DATALAB_COLUMNS = ("is_label_issue", "label_score", "given_label", "predicted_label")


def write_datalab_csv(path: str | os.PathLike, *, labels: np.ndarray, given_labels: np.ndarray,
                      label_quality: np.ndarray) -> Path:
    """Write purified labels as a Datalab label-issues CSV (see the module docstring), atomically.

    Parameters
    ----------
    path
        The ``.csv`` to write.
    labels, given_labels
        ``(N,)`` purified and given labels; a row is a label issue where they differ.
    label_quality
        ``(N,)`` the purifier's probability of each given label (Datalab's ``label_score``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    labels, given = np.asarray(labels, np.int64), np.asarray(given_labels, np.int64)
    with atomic_write(path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(DATALAB_COLUMNS)
        # .9g writes every float32 back exactly; True/False are what pandas reads as bool
        writer.writerows(zip(np.where(labels != given, "True", "False").tolist(),
                             (format(float(v), ".9g") for v in np.asarray(label_quality, np.float32)),
                             given.tolist(), labels.tolist()))
    return path


def read_datalab_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of a Datalab label-issues CSV (ours or Datalab's own ``to_csv`` without
    its index), as arrays: bool, float32, int64, int64."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Datalab CSV not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            absent = [c for c in DATALAB_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise CorruptFileError(f"{path} is not a Datalab label-issues CSV: no column(s) {', '.join(absent)}")
            rows = list(reader)
        return {"is_label_issue": np.array([r["is_label_issue"] == "True" for r in rows], bool),
                "label_score": np.array([float(r["label_score"]) for r in rows], np.float32),
                "given_label": np.array([int(r["given_label"]) for r in rows], np.int64),
                "predicted_label": np.array([int(r["predicted_label"]) for r in rows], np.int64)}
    except (ValueError, KeyError, csv.Error, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"cannot read Datalab CSV {path}: {type(exc).__name__}: {exc}") from exc
