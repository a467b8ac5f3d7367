"""CIFAR-10 laid out on disk the way each upstream codebase reads it.

The upstreams read the same 60,000 images in three layouts:

``pickles``
    ``DIR/data_batch_1..5``, ``DIR/test_batch`` and ``DIR/batches.meta``, the published
    pickles in a flat folder (DivideMix's ``--data_path DIR``).
``torchvision``
    ``DIR/cifar-10-batches-py/...`` (torchvision's ``CIFAR10(root=DIR)``, as ELR+ and
    Co-teaching read it).
``cdr-npy``
    ``DIR/data/cifar10/{train,test}_{images,labels}.npy``: images ``(N, 3072)`` uint8 in
    the pickles' channel-planar row layout, labels ``(N,)`` int64 (CDR, run from ``DIR``).

Every layout is built from a standard ``cifar-10-batches-py`` folder, validated on the
way in, and written atomically; existing files are replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_write
from .cifar import CIFAR10

__all__ = ["LAYOUTS", "write_cifar10_layout"]

LAYOUTS = ("pickles", "torchvision", "cdr-npy")
_PICKLES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def write_cifar10_layout(source: str | os.PathLike, layout: str, dest: str | os.PathLike) -> list[Path]:
    """Write CIFAR-10 from ``source`` (a folder holding ``cifar-10-batches-py``, or it) into ``dest``.

    Returns the files written.
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    dest = Path(dest).expanduser()
    train = CIFAR10(source, "train")  # validates every batch and locates the folder
    if layout == "cdr-npy":
        test = CIFAR10(source, "test")
        out = dest / "data" / "cifar10"
        arrays = {
            "train_images": _planar(train.images), "train_labels": train.targets.astype(np.int64),
            "test_images": _planar(test.images), "test_labels": test.targets.astype(np.int64),
        }
        written = []
        for name, arr in arrays.items():
            with atomic_write(out / f"{name}.npy") as fh:
                np.save(fh, arr)
            written.append(out / f"{name}.npy")
        return written
    out = dest if layout == "pickles" else dest / CIFAR10.folder
    if out.resolve() == train.folder_path.resolve():
        return [out / name for name in _PICKLES]  # already there
    written = []
    for name in _PICKLES:
        with atomic_write(out / name) as fh:
            fh.write((train.folder_path / name).read_bytes())
        written.append(out / name)
    return written


def _planar(images: np.ndarray) -> np.ndarray:
    """``(N, 32, 32, 3)`` HWC back to the pickles' ``(N, 3072)`` channel-planar rows."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))
