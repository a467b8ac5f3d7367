"""Purify a Hugging Face ``datasets`` dataset saved on disk, and write the labels back.

    >>> from dmlp_plugin.hf_datasets import purify_hf_dataset
    >>> result = purify_hf_dataset("my_dataset", "my_dataset_purified", feature_column="embedding",
    ...                            trusted_column="verified_label")
    >>> result.save("purified.npz")

The dataset (a ``Dataset`` or a ``DatasetDict``, as ``save_to_disk`` wrote it) gives the
features (a column of fixed-length vectors), the given labels (a ``ClassLabel`` column,
whose names become the class names) and, optionally, the trusted set (a column holding
the verified label on trusted rows and ``-1`` or nothing elsewhere). The purified labels
become a new column, and the whole dataset (every split) is written with
``save_to_disk`` into a new folder, atomically: into a temporary folder beside it that is
renamed into place once complete. Needs ``pip install 'dmlp-plugin[hf]'``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptFileError, InputError, MissingExtraError, MissingFileError

__all__ = ["purify_hf_dataset", "load_hf_dataset"]

_INSTALL = "pip install 'dmlp-plugin[hf]'"


def _datasets():
    try:
        import datasets
    except ImportError as exc:
        raise MissingExtraError(f"Hugging Face datasets are read with the datasets package: {_INSTALL}") from exc
    return datasets


def load_hf_dataset(path: str | os.PathLike, split: str | None = None) -> tuple[Any, Any, str | None]:
    """``(whole, dataset, split)``: what ``load_from_disk`` read, the split to purify, its name.

    A ``DatasetDict`` needs ``split`` unless it has a ``"train"`` split, which is the default.
    """
    ds_module = _datasets()
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingFileError(f"Hugging Face dataset folder not found: {path}")
    try:
        whole = ds_module.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise CorruptFileError(f"cannot read {path} as a dataset saved with save_to_disk: {exc}") from exc
    if isinstance(whole, ds_module.DatasetDict):
        split = split or ("train" if "train" in whole else None)
        if split not in whole:
            raise InputError(f"{path} holds the splits {', '.join(whole)}; name one with split=")
        return whole, whole[split], split
    if split is not None:
        raise InputError(f"{path} holds one dataset, not splits; leave split out")
    return whole, whole, None


def purify_hf_dataset(source: str | os.PathLike, output: str | os.PathLike, *, feature_column: str,
                      label_column: str = "label", output_column: str = "dmlp_label", split: str | None = None,
                      trusted_column: str | None = None, val_indices: Any = None, val_labels: Any = None,
                      **purify_kwargs: Any):
    """Purify the labels of a dataset saved on disk; write it back with a purified-label column.

    Parameters
    ----------
    source : path
        A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``.
    output : path
        A new folder for the dataset with the added column (refused if it exists and is not
        empty, or is ``source``).
    feature_column : str
        The column of ``(d,)`` feature vectors.
    label_column : str
        The given labels (integers; a ``ClassLabel`` column also gives the class names).
    output_column : str
        The new column's name; it must not exist yet. It has the label column's type.
    split : str, optional
        Of a ``DatasetDict``: the split to purify (default ``"train"``). The others are
        written unchanged.
    trusted_column : str, optional
        A column with the verified label of each trusted row and ``-1`` or null elsewhere.
    val_indices, val_labels : array-like or path, optional
        Or the trusted set as for :func:`~dmlp_plugin.purify_dataset` (including
        ``val_features`` in ``purify_kwargs``).
    **purify_kwargs
        Passed to :func:`~dmlp_plugin.purify_dataset` (``config``, ``seed``, ...).

    Returns
    -------
    PurifyResult
        The purification; its ``labels`` are the new column.

    Raises
    ------
    MissingExtraError
        ``datasets`` is not installed.
    InputError, MissingFileError, CorruptFileError
        A missing column or split, a bad output folder, or an unreadable dataset.
    """
    from . import purify_dataset

    source, output = Path(source).expanduser(), Path(output).expanduser()
    _check_output_folder(source, output)
    whole, dataset, split = load_hf_dataset(source, split)
    for column in (feature_column, label_column) + ((trusted_column,) if trusted_column else ()):
        if column not in dataset.column_names:
            raise InputError(f"the dataset has no column {column!r}; it has {', '.join(dataset.column_names)}")
    if output_column in dataset.column_names:
        raise InputError(f"the dataset already has a column {output_column!r}; choose another output_column")
    label_type = dataset.features[label_column]
    names = list(label_type.names) if hasattr(label_type, "names") else None
    if trusted_column is not None:
        if val_indices is not None or val_labels is not None:
            raise InputError("give the trusted set as trusted_column or as val_indices/val_labels, not both")
        val_indices, val_labels = _trusted_from_column(dataset[trusted_column], trusted_column)
    result = purify_dataset(_features(dataset, feature_column), np.asarray(dataset[label_column]),
                            val_indices=val_indices, val_labels=val_labels, class_names=names, **purify_kwargs)
    purified = dataset.add_column(output_column, result.labels.tolist(), feature=label_type)
    if split is not None:
        whole[split] = purified
    _save_atomically(whole if split is not None else purified, output)
    return result


def _features(dataset: Any, column: str) -> np.ndarray:
    values = dataset.with_format("numpy")[column]
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values
    try:  # ragged columns come back as an object array of rows
        return np.stack(list(values))
    except ValueError as exc:
        raise InputError(f"column {column!r} is not a column of equal-length feature vectors: {exc}") from exc


def _trusted_from_column(values: list, column: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [i for i, v in enumerate(values) if v is not None and v >= 0]
    if not rows:
        raise InputError(f"trusted column {column!r} has no verified label (every row is -1 or null)")
    return np.asarray(rows, np.int64), np.asarray([values[i] for i in rows], np.int64)


def _check_output_folder(source: Path, output: Path) -> None:
    if output.resolve() == source.resolve():
        raise InputError(f"the output folder is the source {source}; write the purified dataset to a new folder")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"output {output} already exists; give a new folder (it is not overwritten)")
    if not os.access(output.parent if output.parent.exists() else Path.cwd(), os.W_OK):
        raise InputError(f"output {output} cannot be written: no permission to write in {output.parent}")


def _save_atomically(dataset: Any, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        dataset.save_to_disk(str(staging))
        if output.is_dir():
            output.rmdir()  # empty (checked before the run); rename does not replace a folder
        os.rename(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
