"""The CSV a person fills in to make a trusted set, and reading it back.

``dmlp trusted --to-label K`` writes one row per image to verify::

    index,path,given_label,given_class,true_label
    17,/data/train/cat/0017.png,3,cat,

``index`` is the row in the dataset, ``path`` where its image is, ``given_label`` and
``given_class`` its given label as a number and a name. The person fills ``true_label``
with a class name or number (in a spreadsheet, or on the page written beside the CSV,
which saves the same columns). :func:`read_labelled_csv` reads it back and refuses, each
in one line, a row without a true label, an index given twice, and a class it does not
know. The class names and numbers are learnt from the ``given_label``/``given_class``
pairs: the rows are drawn from every given class, so every class appears there.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CorruptFileError, DataFileError, InputError, LabelError, MissingFileError
from .io import atomic_write, open_text

__all__ = ["TO_LABEL_COLUMNS", "to_label_csv", "write_to_label_csv", "read_labelled_csv", "LabelledRows"]

TO_LABEL_COLUMNS = ("index", "path", "given_label", "given_class", "true_label")
#: Memory a labelled CSV takes while read, per byte of it: every line becomes a dict of five
#: strings. Measured (tracemalloc, 200,000 rows): 14x for typical rows, 67x for rows of an
#: index alone.
CSV_MEMORY_FACTOR = 128


@dataclass(frozen=True)
class LabelledRows:
    """Verified labels read from a CSV: ``labels[k]`` is the true class of row ``indices[k]``."""

    indices: np.ndarray      # (V,) int64, ascending
    labels: np.ndarray       # (V,) int64
    class_names: list[str]   # names by class number, as far as the CSV tells them
    given: np.ndarray | None = None  # (V,) int64 given labels, when every row has one


def to_label_csv(indices: np.ndarray, given_labels: np.ndarray, class_names: Sequence[str],
                 locations: Sequence[str]) -> str:
    """The CSV's text: a row per index (``given_labels`` indexed by it), ``true_label`` empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TO_LABEL_COLUMNS)
    for i, where in zip(np.asarray(indices).tolist(), locations):
        g = int(given_labels[i])
        writer.writerow([i, where, g, class_names[g], ""])
    return buffer.getvalue()


def write_to_label_csv(path: str | os.PathLike, indices: np.ndarray, given_labels: np.ndarray,
                       class_names: Sequence[str], locations: Sequence[str]) -> Path:
    """Write the rows to verify (:func:`to_label_csv`), atomically."""
    path = Path(path)
    with atomic_write(path, "w") as fh:
        fh.write(to_label_csv(indices, given_labels, class_names, locations))
    return path


def read_labelled_csv(path: str | os.PathLike) -> LabelledRows:
    """Read verified labels from a CSV written by :func:`write_to_label_csv` and filled in.

    Raises
    ------
    MissingFileError, CorruptFileError
        The file is absent, not a CSV, or lacks the ``index`` or ``true_label`` column.
    InputError
        An index that is not a row number or appears twice, or rows without a true label.
    LabelError
        A true label that names no known class.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"labelled CSV not found: {path}")
    try:
        # utf-8-sig: spreadsheets add a BOM. Read whole, so the size is checked first.
        with open_text(path, "labelled CSV", memory_factor=CSV_MEMORY_FACTOR, newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [({k.strip(): (v or "").strip() for k, v in row.items() if k is not None}, reader.line_num)
                    for row in reader]
    except DataFileError:  # too large, or not a regular file: already one line
        raise
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise CorruptFileError(f"cannot read labelled CSV {path}: {exc}") from exc
    missing = [c for c in ("index", "true_label") if c not in columns]
    if missing:
        raise CorruptFileError(f"labelled CSV {path} has no {' or '.join(repr(c) for c in missing)} column "
                               f"(it has: {', '.join(columns) or 'nothing'}); write it with dmlp trusted --to-label")
    if not rows:
        raise InputError(f"labelled CSV {path} has no rows")
    indices = _indices(rows, path)
    names = _class_names(rows, path)
    labels = _true_labels(rows, names, path)
    given = [row.get("given_label", "") for row, _ in rows]
    given_arr = np.asarray([int(g) for g in given], np.int64) if all(g.isdigit() for g in given) else None
    order = np.argsort(indices, kind="stable")
    return LabelledRows(indices[order], labels[order], names, None if given_arr is None else given_arr[order])


def _indices(rows: list[tuple[dict[str, str], int]], path: Path) -> np.ndarray:
    seen: dict[int, int] = {}
    for row, line in rows:
        text = row.get("index", "")
        if not text.isdigit():
            raise InputError(f"{path} line {line}: index {text!r} is not a row number")
        if int(text) in seen:
            raise InputError(f"{path}: index {int(text)} appears twice (lines {seen[int(text)]} and {line}); "
                             "verify each row once")
        seen[int(text)] = line
    return np.fromiter(seen, np.int64, len(seen))


def _class_names(rows: list[tuple[dict[str, str], int]], path: Path) -> list[str]:
    """Class names by number, from the given_label/given_class pairs (empty without them)."""
    by_number: dict[int, tuple[str, int]] = {}
    for row, line in rows:
        number, name = row.get("given_label", ""), row.get("given_class", "")
        if not number.isdigit() or not name:
            continue
        earlier = by_number.setdefault(int(number), (name, line))
        if earlier[0] != name:
            raise CorruptFileError(f"{path} line {line}: given_label {number} is called {name!r} but line "
                                   f"{earlier[1]} calls it {earlier[0]!r}")
    top = max(by_number, default=-1) + 1
    return [by_number[k][0] if k in by_number else str(k) for k in range(top)]


def _true_labels(rows: list[tuple[dict[str, str], int]], names: list[str], path: Path) -> np.ndarray:
    lookup = {name.casefold(): k for k, name in enumerate(names)}
    empty = [(row["index"], line) for row, line in rows if not row.get("true_label")]
    if empty:
        raise InputError(f"{path}: {len(empty)} row(s) have no true_label (first: index {empty[0][0]}, line "
                         f"{empty[0][1]}); label every row, since leaving out the hard ones would bias the "
                         "trusted set")
    labels = []
    for row, line in rows:
        text = row["true_label"]
        k = lookup.get(text.casefold())  # a name first: the page writes names, and names may be digits
        if k is None and text.isdigit():
            k = int(text)
        if k is None or (names and k >= len(names)):
            known = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            hint = f"a class name ({known}) or number 0-{len(names) - 1}" if names else "a class number"
            raise LabelError(f"{path} line {line}: true_label {text!r} is not a known class; use {hint}")
        labels.append(k)
    return np.asarray(labels, np.int64)
