"""A dataset from in-memory arrays."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import InputError, LabelError, ShapeError
from .base import ImageDataset

__all__ = ["ArrayDataset"]


class ArrayDataset(ImageDataset):
    """Images and labels given as arrays; index ``i`` is row ``i``.

    Parameters
    ----------
    images
        ``(N, H, W, 3)`` uint8 RGB images.
    labels
        ``(N,)`` integer labels in ``[0, len(classes))``.
    classes
        Class names; defaults to ``"0" .. str(max(labels))``.
    name
        Identifies the dataset in caches and messages.
    transform
        Applied to each PIL image.

    Raises
    ------
    InputError
        ``images`` is not uint8.
    ShapeError
        ``images`` is not ``(N, H, W, 3)``, or its length differs from ``labels``.
    LabelError
        Labels are not integers, or fall outside the classes.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: Sequence[str] | None = None,
                 *, name: str = "arrays",
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        super().__init__(transform)
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8:
            raise InputError(f"images must be uint8, got {images.dtype}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ShapeError(f"images must be (N, H, W, 3), got shape {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ShapeError(f"labels must be (N,) with N = {len(images)} images, got shape {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise LabelError(f"labels must be integers, got {labels.dtype}")
        labels = labels.astype(np.int64)
        if classes is None:
            classes = [str(c) for c in range(int(labels.max()) + 1 if labels.size else 0)]
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise LabelError(f"labels span [{labels.min()}, {labels.max()}] but there are {len(classes)} classes")
        self.images = images
        self.targets = labels
        self.classes = list(classes)
        self.name = name
