"""The ``cifar-10-batches-py`` pickles, built from CIFAR-10 kept as image files.

Some copies of CIFAR-10 are a tree of images (``dmlp data cifar10 --from-folder``)::

    SOURCE/train/<class>/<image>.png|.jpg|.jpeg
    SOURCE/test/<class>/<image>.png|.jpg|.jpeg

What the build assumes, since a tree of files holds no order of its own:

- **Classes** are the sub-folders of ``train/`` sorted by name, numbered from 0; ``test/``
  must have the same ones. CIFAR-10's own class names sort into CIFAR-10's label order
  (airplane 0, automobile 1, ... truck 9), so a tree named after them keeps its labels.
- **Images of a class** are taken in natural file-name order (``2.png`` before
  ``10.png``; hidden files and other extensions are skipped). They must be 32x32; other
  modes are converted to RGB.
- **The order of a split** is class by class (every image of class 0, then of class 1...),
  unless an order file gives the class at each position (``train_order``/``test_order``,
  an ``.npy`` of labels): position ``i`` then takes the next unused image of class
  ``order[i]``. When image ``k`` of class ``c`` in the tree is the ``k``-th image of class
  ``c`` in the original release, the original training labels as the order file rebuild
  the original order, so index-based label files (CIFAR-10N, upstream noise files) line up.
- The training images are cut into ``data_batch_1`` to ``data_batch_5`` in that order,
  as evenly as possible; the test images make ``test_batch``.

The pickles hold only plain content (a dict of a ``uint8`` array, lists of ints and strings,
strings), written with pickle protocol 2 and numpy's array rebuilder under its numpy 1.x
name, as in the original release, so the package's restricted unpickler, torchvision and the
upstream codebases all read them, under numpy 1 or 2. Each file is
written atomically into the destination folder and nowhere else.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingFileError, ShapeError
from ..io import atomic_write

__all__ = ["build_cifar10_batches", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SIDE = 32


def build_cifar10_batches(source: str | os.PathLike, dest: str | os.PathLike, *,
                          train_order: np.ndarray | None = None, test_order: np.ndarray | None = None,
                          progress: Any = True) -> list[Path]:
    """Write ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` into ``dest`` from the
    image tree ``source`` (see the module docstring for the order assumed).

    Parameters
    ----------
    source : path
        Holds ``train/<class>/`` and ``test/<class>/``.
    dest : path
        The folder to write (usually ``.../cifar-10-batches-py``); created if need be.
    train_order, test_order : (N,) int array, optional
        The class of each position of the split; class by class when omitted.
    progress : bool or Reporter
        Report the images read (see :func:`dmlp_plugin.progress.reporting`).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    MissingFileError
        ``source`` lacks ``train/`` or ``test/``.
    InputError, ShapeError
        Different classes in the two splits, an empty class, an image that is not 32x32 or
        cannot be read, or an order file that does not fit the tree's class counts.
    """
    from ..progress import reporting

    source, dest = Path(source).expanduser(), Path(dest).expanduser()
    trees = {split: _class_files(source, split) for split in ("train", "test")}
    classes = list(trees["train"])
    if list(trees["test"]) != classes:
        raise InputError(f"{source}: train/ has classes {classes} but test/ has {list(trees['test'])}")
    with reporting(progress) as report:
        splits = {split: _read_split(files, order, report, f"reading {split} images")
                  for (split, files), order in zip(trees.items(), (train_order, test_order))}
    written = []
    batches = np.array_split(np.arange(len(splits["train"][0])), 5)
    for i, rows in enumerate(batches, 1):
        written.append(_write(dest / f"data_batch_{i}", _batch(f"training batch {i} of 5", splits["train"], rows)))
    test_rows = np.arange(len(splits["test"][0]))
    written.append(_write(dest / "test_batch", _batch("testing batch 1 of 1", splits["test"], test_rows)))
    meta = {"label_names": classes, "num_cases_per_batch": int(max(len(b) for b in batches)), "num_vis": 3 * _SIDE ** 2}
    written.append(_write(dest / "batches.meta", meta))
    return written


def _natural(name: str) -> list[Any]:
    """Sort key comparing runs of digits as numbers: ``2.png`` before ``10.png``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _class_files(source: Path, split: str) -> dict[str, list[Path]]:
    folder = source / split
    if not folder.is_dir():
        raise MissingFileError(f"{source} has no {split}/ folder: --from-folder expects {split}/<class>/<image> "
                               f"({', '.join(IMAGE_SUFFIXES)})")
    out = {}
    for sub in sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.name):
        files = sorted((f for f in sub.iterdir() if f.is_file() and not f.name.startswith(".")
                        and f.suffix.lower() in IMAGE_SUFFIXES), key=lambda f: _natural(f.name))
        if not files:
            raise InputError(f"{sub} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        out[sub.name] = files
    if len(out) < 2:
        raise InputError(f"{folder} holds {len(out)} class folder(s); CIFAR-10 has one per class")
    return out


def _positions(counts: list[int], order: np.ndarray | None, what: str) -> list[tuple[int, int]]:
    """``(class, k)`` at each position: class by class, or the ``k``-th unused image of
    class ``order[i]`` at position ``i``."""
    if order is None:
        return [(c, k) for c, n in enumerate(counts) for k in range(n)]
    order = np.asarray(order)
    if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer):
        raise InputError(f"the {what} order must be a 1-D array of class indices, got {order.dtype} {order.shape}")
    found = np.bincount(order, minlength=len(counts)) if len(order) and order.min() >= 0 else None
    if found is None or len(found) != len(counts) or list(found) != counts:
        raise ShapeError(f"the {what} order does not fit the tree: it asks for "
                         f"{'a negative class' if found is None else list(found)} images per class, the tree has "
                         f"{counts}")
    seen = [0] * len(counts)
    out = []
    for c in order.tolist():
        out.append((c, seen[c]))
        seen[c] += 1
    return out


def _read_split(files: dict[str, list[Path]], order: np.ndarray | None, report: Any,
                stage: str) -> tuple[np.ndarray, list[int], list[str]]:
    """``(data (N, 3072) uint8 channel-planar, labels, file names)`` in the split's order."""
    from PIL import Image, UnidentifiedImageError

    per_class = list(files.values())
    positions = _positions([len(f) for f in per_class], order, stage.split()[1])
    data = np.empty((len(positions), 3 * _SIDE ** 2), dtype=np.uint8)
    report(stage, 0, len(positions), unit="images")
    labels, names = [], []
    for i, (c, k) in enumerate(positions):
        path = per_class[c][k]
        try:
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"cannot read image {path}: {exc}") from None
        if rgb.shape[:2] != (_SIDE, _SIDE):
            raise ShapeError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]}; CIFAR-10 images are 32x32")
        data[i] = rgb.transpose(2, 0, 1).reshape(-1)  # the pickles' channel-planar rows
        labels.append(c)
        names.append(path.name)
        if i % 256 == 255 or i + 1 == len(positions):
            report(stage, i + 1, len(positions), unit="images")
    report.end(stage)
    return data, labels, names


def _batch(label: str, split: tuple[np.ndarray, list[int], list[str]], rows: np.ndarray) -> dict[str, Any]:
    data, labels, names = split
    return {"batch_label": label, "labels": [labels[i] for i in rows], "data": np.ascontiguousarray(data[rows]),
            "filenames": [names[i] for i in rows]}


def _write(path: Path, content: dict[str, Any]) -> Path:
    with atomic_write(path) as fh:
        fh.write(_dumps(content))
    return path


def _dumps(content: dict[str, Any]) -> bytes:
    """A protocol-2 pickle of plain ``content`` that numpy 1.x and 2.x both read.

    numpy 2 names its array rebuilder ``numpy._core.multiarray``, which numpy 1.x cannot
    import; the original release, and numpy 1.x, name it ``numpy.core.multiarray``, which
    numpy 2 still resolves. That one name is rewritten where the pickle's GLOBAL opcodes
    hold it (protocol 2 refers to earlier objects by memo index, never by byte offset).
    """
    raw = pickle.dumps(content, protocol=2)
    old, new = b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"
    parts, last = [], 0
    for op, arg, pos in pickletools.genops(raw):
        if op.name == "GLOBAL" and str(arg).startswith("numpy._core.multiarray "):
            parts += [raw[last:pos + 1], new]  # pos is the opcode byte; the module name follows
            last = pos + 1 + len(old)
    return b"".join(parts + [raw[last:]])
