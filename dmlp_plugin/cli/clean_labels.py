"""Clean labels on the command line, from a file or a dataset: how ``dmlp noise`` and
``dmlp trusted`` take them (``--labels FILE``, or ``--dataset NAME --root DIR [--split]``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..data import ImageDataset

__all__ = ["add_clean_label_arguments", "read_clean_labels"]


def add_clean_label_arguments(group: Any, *, labels_help: str, dataset_help: str) -> None:
    """Add ``--labels``, ``--dataset``, ``--root`` and ``--split`` to ``group`` (a parser or
    an argument group); the two helps say what each command does with them."""
    group.add_argument("--labels", type=Path, metavar="FILE", help=labels_help)
    group.add_argument("--dataset", metavar="NAME", help=dataset_help)
    group.add_argument("--root", type=Path, metavar="DIR", help="the dataset's folder")
    group.add_argument("--split", default="train", help="dataset split (default: train)")


def read_clean_labels(args: argparse.Namespace) -> tuple[np.ndarray | None, ImageDataset | None]:
    """The clean labels and, when read from one, the dataset (both None when not given)."""
    from ..io import load_array

    if args.labels is not None and args.root is not None:
        raise InputError("give clean labels with --labels or with --dataset/--root, not both")
    if args.labels is not None:
        return np.asarray(load_array(args.labels, what="clean label")), None
    if args.root is not None:
        if args.dataset is None:
            raise InputError("--root needs --dataset NAME (cifar10, cifar100, clothing1m, imagefolder)")
        from ..data import load_dataset  # only here: it loads torch, which a labels file does not need

        dataset = load_dataset(args.dataset, args.root, args.split)
        return dataset.targets, dataset
    return None, None
