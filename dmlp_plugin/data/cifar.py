"""CIFAR-10 and CIFAR-100 from the standard python-pickle folders.

The pickles are read directly rather than through torchvision, so folders rebuilt from
other sources (``shared/tools/build_cifar10.py`` re-encodes the images, so torchvision's
md5 check fails on them) load too, and nothing is ever downloaded at run time. The
training set is the batches concatenated in their published order, so index ``i`` here
is index ``i`` in every upstream codebase and in CIFAR-N's label files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
from PIL import Image

from ..errors import CorruptFileError, InputError, MissingFileError
from ..safe_pickle import load_pickle
from .base import ImageDataset

__all__ = ["CIFAR10", "CIFAR100"]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class _CIFAR(ImageDataset):
    """Shared reader; subclasses name the folder, files and pickle keys."""

    folder: ClassVar[str]
    split_files: ClassVar[dict[str, tuple[str, ...]]]
    meta_file: ClassVar[str]
    label_key: ClassVar[str]
    class_key: ClassVar[str]
    how_to_get: ClassVar[str]

    def __init__(self, root: str | os.PathLike, split: str = "train", *,
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        super().__init__(transform)
        if split not in self.split_files:
            raise InputError(f"{self.name} has no split {split!r}; choose one of {', '.join(self.split_files)}")
        self.split = split
        self.folder_path = self._locate(Path(root).expanduser())
        images, targets = [], []
        batches = [load_pickle(self.folder_path / f, what=f"{self.name} {split}")
                   for f in self.split_files[split]]
        for fname, batch in zip(self.split_files[split], batches):
            data, labels = self._check_batch(batch, self.folder_path / fname)
            images.append(data)
            targets.append(labels)
        # Pickled rows are channel-planar (3x32x32); PIL and the ImageDataset contract want HWC.
        flat = np.concatenate(images) if len(images) > 1 else images[0]
        self.images = np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        self.targets = np.concatenate(targets)
        meta_path = self.folder_path / self.meta_file
        meta = load_pickle(meta_path, what=f"{self.name} metadata")
        if not isinstance(meta, dict) or self.class_key not in meta:
            raise CorruptFileError(f"{self.name} metadata file {meta_path} has no {self.class_key!r} entry")
        self.classes = [str(c) for c in meta[self.class_key]]
        bad = (self.targets < 0) | (self.targets >= len(self.classes))
        if bad.any():
            raise CorruptFileError(
                f"{self.name} {split}: {int(bad.sum())} labels outside [0, {len(self.classes)}) "
                f"in {self.folder_path}")
        self._read_extra(batches, meta)

    def _read_extra(self, batches: list[dict], meta: dict) -> None:
        """Subclasses pick further entries (CIFAR-100's superclasses) from the pickles."""

    def _locate(self, root: Path) -> Path:
        """Accept the parent folder or the ``cifar-*`` folder itself."""
        probe = self.split_files["train"][0]
        for candidate in (root / self.folder, root):
            if (candidate / probe).is_file() or candidate.name == self.folder and candidate.is_dir():
                return candidate
        raise MissingFileError(
            f"{self.name}: expected the folder {self.folder!r} in {root} (or {root} to be it), "
            f"but it is not there. {self.how_to_get} Nothing is downloaded at run time.")

    def _check_batch(self, batch: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(batch, dict) or "data" not in batch or self.label_key not in batch:
            raise CorruptFileError(
                f"{path} is not a {self.name} batch: expected a dict with 'data' and {self.label_key!r}")
        data = np.asarray(batch["data"])
        labels = np.asarray(batch[self.label_key], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise CorruptFileError(
                f"{path}: 'data' should be (n, 3072) uint8, got {data.dtype} {data.shape}")
        if labels.shape != (len(data),):
            raise CorruptFileError(f"{path}: {len(data)} images but {labels.size} labels")
        return data, labels


class CIFAR10(_CIFAR):
    """CIFAR-10 from ``cifar-10-batches-py``: 50,000 train and 10,000 test 32x32 images.

    Parameters
    ----------
    root
        The folder containing ``cifar-10-batches-py``, or that folder itself.
    split
        ``"train"`` (``data_batch_1..5`` in order) or ``"test"`` (``test_batch``).
    transform
        Applied to each PIL image by ``__getitem__``.

    Attributes
    ----------
    images : np.ndarray
        ``(N, 32, 32, 3)`` uint8.
    targets : np.ndarray
        ``(N,)`` int64 labels.
    classes : list of str
        From ``batches.meta``.

    Raises
    ------
    MissingFileError
        The folder or one of its files is absent.
    CorruptFileError
        A file is truncated or not a CIFAR batch; the message names it.
    """

    name = "cifar10"
    folder = "cifar-10-batches-py"
    split_files = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
    meta_file = "batches.meta"
    label_key = "labels"
    class_key = "label_names"
    how_to_get = (f"Download the python version from {CIFAR_URL} and extract it there, or build "
                  "one with `python ../shared/tools/build_cifar10.py DIR` from a dmlp-plugin checkout.")


class CIFAR100(_CIFAR):
    """CIFAR-100 from ``cifar-100-python``: 50,000 train and 10,000 test images, 100 classes.

    Parameters are as for :class:`CIFAR10`; ``root`` contains ``cifar-100-python`` (or is
    it). ``targets`` are the fine labels.

    Attributes
    ----------
    coarse_targets : np.ndarray
        ``(N,)`` int64 superclass labels (20 superclasses) from the pickle.
    coarse_classes : list of str
        From ``meta``.
    """

    name = "cifar100"
    folder = "cifar-100-python"
    split_files = {"train": ("train",), "test": ("test",)}
    meta_file = "meta"
    label_key = "fine_labels"
    class_key = "fine_label_names"
    how_to_get = f"Download the python version from {CIFAR_URL} and extract it there."

    def _read_extra(self, batches: list[dict], meta: dict) -> None:
        if "coarse_labels" not in batches[0]:
            raise CorruptFileError(f"{self.folder_path / self.split}: no 'coarse_labels' entry")
        self.coarse_targets = np.asarray(batches[0]["coarse_labels"], dtype=np.int64)
        self.coarse_classes = [str(c) for c in meta.get("coarse_label_names", [])]
