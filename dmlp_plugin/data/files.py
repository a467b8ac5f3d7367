"""Datasets whose images are files on disk, read lazily one at a time."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CorruptFileError, MissingFileError, ShapeError
from .base import ImageDataset

__all__ = ["FileListDataset"]


class FileListDataset(ImageDataset):
    """Images at ``root / files[i]`` with labels ``targets[i]``; the index is ``i``.

    Parameters
    ----------
    root
        Folder the relative paths in ``files`` start from.
    files
        ``(N,)`` relative image paths, in the dataset's stable order.
    targets
        ``(N,)`` integer labels.
    classes
        Class names; ``targets`` index into it.
    name
        Identifies the dataset in caches and messages.
    transform
        Applied to each PIL image.
    """

    def __init__(self, root: str | os.PathLike, files: Sequence[str], targets: np.ndarray,
                 classes: Sequence[str], *, name: str,
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        super().__init__(transform)
        if len(files) != len(targets):
            raise ShapeError(f"{name}: {len(files)} files but {len(targets)} labels")
        self.root = Path(root)
        self.files = list(files)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.name = name

    def load_image(self, index: int) -> Image.Image:
        path = self.root / self.files[index]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except FileNotFoundError:
            raise MissingFileError(f"{self.name}: image {index} not found: {path}") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise CorruptFileError(f"{self.name}: cannot decode image {index} at {path}: {exc}") from exc

    def fingerprint(self) -> str:
        """Hash of the name, the relative file list and the labels (not the image bytes,
        which would mean reading the whole dataset)."""
        h = hashlib.sha256()
        h.update(f"{self.name}:{len(self)}".encode())
        h.update("\n".join(self.files).encode())
        h.update(np.ascontiguousarray(self.targets, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]
