"""Any torchvision-style image folder: one subfolder per class."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ..errors import InputError, MissingFileError
from .files import FileListDataset

__all__ = ["ImageFolder"]


class ImageFolder(FileListDataset):
    """``root/<class>/<image>`` with classes and files in the same sorted order as
    torchvision's ``ImageFolder``, so indices line up with code that uses it.

    Parameters
    ----------
    root
        Folder holding one subfolder per class.
    transform
        Applied to each PIL image.
    extensions
        File name endings counted as images (case-insensitive).

    Raises
    ------
    MissingFileError
        ``root`` does not exist, or holds no class folder.
    InputError
        No image file in any class folder.
    """

    def __init__(self, root: str | os.PathLike, *,
                 transform: Callable[[Image.Image], Any] | None = None,
                 extensions: tuple[str, ...] = IMG_EXTENSIONS) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise MissingFileError(f"image folder not found: {root}")
        try:
            classes, class_to_idx = find_classes(root)
        except FileNotFoundError:
            raise MissingFileError(f"image folder {root} has no class subfolders") from None
        # allow_empty: an empty class keeps its index (as torchvision assigns it) instead of failing.
        samples = make_dataset(root, class_to_idx, extensions=extensions, allow_empty=True)
        if not samples:
            raise InputError(f"image folder {root} has no image files ({', '.join(extensions)}) "
                             f"in its {len(classes)} class folders")
        empty = sorted(set(classes) - {Path(p).relative_to(root).parts[0] for p, _ in samples})
        if empty:
            warnings.warn(f"image folder {root}: no images in class folders {empty}", stacklevel=2)
        files = [Path(p).relative_to(root).as_posix() for p, _ in samples]
        targets = np.fromiter((t for _, t in samples), dtype=np.int64, count=len(samples))
        super().__init__(root, files, targets, classes, name=f"imagefolder:{root.name}", transform=transform)
