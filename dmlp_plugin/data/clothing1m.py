"""Clothing1M (Xiao et al., CVPR 2015) from its standard annotation files.

The release holds ``noisy_label_kv.txt`` and ``clean_label_kv.txt`` (lines
``images/0/00/xxx.jpg 11``), the key lists ``noisy_train_key_list.txt``,
``clean_val_key_list.txt``, ``clean_test_key_list.txt`` (and usually
``clean_train_key_list.txt``), and ``category_names_eng.txt`` (14 class names, one a
line). Annotation files are looked for in ``root`` and then ``root/annotations``; images
at ``root/<key>``, read only when asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..errors import CorruptFileError, InputError, MissingFileError
from .files import FileListDataset

__all__ = ["Clothing1M", "CLOTHING1M_SPLITS"]

# split -> (key list, label file). clean_train's key list is optional: see _clean_train_keys.
CLOTHING1M_SPLITS: dict[str, tuple[str, str]] = {
    "noisy_train": ("noisy_train_key_list.txt", "noisy_label_kv.txt"),
    "clean_train": ("clean_train_key_list.txt", "clean_label_kv.txt"),
    "clean_val": ("clean_val_key_list.txt", "clean_label_kv.txt"),
    "clean_test": ("clean_test_key_list.txt", "clean_label_kv.txt"),
}
_ALIASES = {"train": "noisy_train", "val": "clean_val", "test": "clean_test"}


class Clothing1M(FileListDataset):
    """One split of Clothing1M; index ``i`` is the ``i``-th key of the split's key list.

    Parameters
    ----------
    root
        Folder with the annotation files (or their ``annotations/`` subfolder) and the
        images under the paths the keys name.
    split
        ``"noisy_train"`` (labels from ``noisy_label_kv.txt``), ``"clean_train"``,
        ``"clean_val"`` or ``"clean_test"`` (labels from ``clean_label_kv.txt``).
        ``"train"``, ``"val"`` and ``"test"`` are aliases of the first, third and fourth.
        ``"clean_train"`` reads ``clean_train_key_list.txt`` when present; otherwise it is
        every key of ``clean_label_kv.txt`` not in the val or test lists, in file order
        (the clean label file covers all three clean splits, so taking it whole would
        leak the test set).
    transform
        Applied to each PIL image.

    Raises
    ------
    MissingFileError
        An annotation file is absent.
    CorruptFileError
        A file is malformed, or a key has no label; the message names the file.
    """

    def __init__(self, root: str | os.PathLike, split: str = "noisy_train", *,
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        split = _ALIASES.get(split, split)
        if split not in CLOTHING1M_SPLITS:
            raise InputError(f"clothing1m has no split {split!r}; choose one of "
                             f"{', '.join(CLOTHING1M_SPLITS)} (or train, val, test)")
        root = Path(root).expanduser()
        self.split = split
        self.annotation_dir = _annotation_dir(root)
        classes = _read_lines(self.annotation_dir / "category_names_eng.txt")
        list_name, label_name = CLOTHING1M_SPLITS[split]
        kv = _read_kv(self.annotation_dir / label_name, len(classes))
        if split == "clean_train" and not (self.annotation_dir / list_name).is_file():
            keys = self._clean_train_keys(kv)
        else:
            keys = _read_lines(self.annotation_dir / list_name)
        missing = [k for k in keys if k not in kv]
        if missing:
            raise CorruptFileError(
                f"clothing1m {split}: {len(missing)} keys of {list_name} have no label in "
                f"{self.annotation_dir / label_name}, e.g. {missing[0]!r}")
        targets = np.fromiter((kv[k] for k in keys), dtype=np.int64, count=len(keys))
        super().__init__(root, keys, targets, classes, name=f"clothing1m-{split}", transform=transform)

    def write_label_kv(self, labels: Any, path: str | os.PathLike) -> Path:
        """Write ``labels`` back in the release's own format: a copy of this split's label
        file (``noisy_label_kv.txt`` for ``noisy_train``) in which each key of the split
        carries ``labels[index]``; every other line is kept as it was, in its order.

        That file, under its release name in ``--data_path``, is what DivideMix's
        ``dataloader_clothing1M.py`` (``Train_clothing1M.py``) reads its training labels
        from: it maps ``<data_path>/<key minus "images/">`` to the label of each line, so the
        purified labels reach every training image without touching the upstream code.

        Parameters
        ----------
        labels
            ``(N,)`` integer labels in this split's index order (e.g. ``result.labels``).
        path
            Destination, written atomically; may be the original file's name in another
            folder.

        Raises
        ------
        ShapeError
            ``labels`` does not have one entry per sample of the split.
        LabelError
            A label is not an integer class index.
        """
        from ..errors import LabelError, ShapeError
        from ..io import atomic_write

        labels = np.asarray(labels)
        if labels.shape != (len(self),):
            raise ShapeError(f"clothing1m {self.split}: {labels.shape} labels for {len(self)} samples; "
                             "give one label per sample, in index order")
        if labels.size and (not np.issubdtype(labels.dtype, np.integer)
                            or labels.min() < 0 or labels.max() >= self.num_classes):
            raise LabelError(f"clothing1m labels must be integers in [0, {self.num_classes}), "
                             f"got {labels.dtype} spanning [{labels.min()}, {labels.max()}]")
        new = dict(zip(self.files, labels.tolist()))
        source = self.annotation_dir / CLOTHING1M_SPLITS[self.split][1]
        with open(source, encoding="utf-8") as fh, atomic_write(path, "w") as out:
            for line in fh:
                key = line.split(maxsplit=1)[0] if line.strip() else None
                # relabel the split's keys; keep every other line byte for byte
                out.write(f"{key} {new[key]}\n" if key in new else line)
        return Path(path)

    def _clean_train_keys(self, kv: dict[str, int]) -> list[str]:
        held_out = set()
        for other in ("clean_val", "clean_test"):
            held_out.update(_read_lines(self.annotation_dir / CLOTHING1M_SPLITS[other][0]))
        return [k for k in kv if k not in held_out]


def _annotation_dir(root: Path) -> Path:
    for candidate in (root, root / "annotations"):
        if (candidate / "category_names_eng.txt").is_file():
            return candidate
    if not root.is_dir():
        raise MissingFileError(f"clothing1m folder not found: {root}")
    raise MissingFileError(
        f"clothing1m: no category_names_eng.txt in {root} or {root / 'annotations'}; expected "
        "the release's annotation files (noisy_label_kv.txt, clean_label_kv.txt, *_key_list.txt, "
        "category_names_eng.txt)")


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise MissingFileError(f"clothing1m annotation file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def _read_kv(path: Path, num_classes: int) -> dict[str, int]:
    """``key label`` lines -> {key: label}, checking every label names a class."""
    if not path.is_file():
        raise MissingFileError(f"clothing1m annotation file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        tokens = fh.read().split()
    if len(tokens) % 2:
        raise CorruptFileError(f"{path}: expected 'key label' pairs, got an odd number of fields")
    try:
        labels = np.asarray(tokens[1::2], dtype=np.int64)
    except ValueError as exc:
        raise CorruptFileError(f"{path}: a label is not an integer ({exc})") from exc
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise CorruptFileError(
            f"{path}: label {labels[bad[0]]} of {tokens[2 * bad[0]]!r} is outside [0, {num_classes})")
    return dict(zip(tokens[0::2], labels.tolist()))
