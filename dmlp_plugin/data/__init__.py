"""Datasets: CIFAR-10/100, Clothing1M, any ImageFolder, and plain arrays.

Every dataset yields ``(image, label, index)`` (see :class:`ImageDataset`).

    >>> from dmlp_plugin.data import load_dataset
    >>> train = load_dataset("cifar10", "~/data")          # ~/data/cifar-10-batches-py
    >>> train.images.shape, train.targets[:3]
    ((50000, 32, 32, 3), array([6, 9, 9]))
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from .arrays import ArrayDataset
from .base import ImageDataset
from .cifar import CIFAR10, CIFAR100
from .clothing1m import CLOTHING1M_SPLITS, Clothing1M
from .files import FileListDataset
from .folder import ImageFolder

__all__ = [
    "ImageDataset",
    "FileListDataset",
    "ArrayDataset",
    "CIFAR10",
    "CIFAR100",
    "Clothing1M",
    "CLOTHING1M_SPLITS",
    "ImageFolder",
    "DATASETS",
    "load_dataset",
]

DATASETS = ("cifar10", "cifar100", "clothing1m", "imagefolder")


def load_dataset(name: str, root: str | os.PathLike, split: str = "train", **kw: Any) -> ImageDataset:
    """Open a dataset by name.

    Parameters
    ----------
    name
        One of :data:`DATASETS`: ``"cifar10"``, ``"cifar100"``, ``"clothing1m"``,
        ``"imagefolder"``.
    root
        The dataset's folder (see each class for what it must hold).
    split
        ``"train"`` or ``"test"`` for CIFAR; any of :data:`CLOTHING1M_SPLITS` (or
        ``"train"``/``"val"``/``"test"``) for Clothing1M. For ``"imagefolder"``,
        ``root/split`` is used when it is a folder, else ``root`` itself.
    **kw
        Passed to the class, e.g. ``transform=``.

    Raises
    ------
    InputError
        Unknown ``name`` (with close matches) or ``split``.
    MissingFileError, CorruptFileError
        From the dataset class.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key == "cifar10":
        return CIFAR10(root, split, **kw)
    if key == "cifar100":
        return CIFAR100(root, split, **kw)
    if key == "clothing1m":
        return Clothing1M(root, split, **kw)
    if key == "imagefolder":
        folder = Path(root).expanduser()
        return ImageFolder(folder / split if split and (folder / split).is_dir() else folder, **kw)
    close = difflib.get_close_matches(name.lower(), DATASETS, n=2)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.{hint}")
