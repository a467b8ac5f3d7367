"""The contract every dataset in dmlp-plugin follows.

A dataset yields ``(image, label, index)``: the image (PIL, or whatever ``transform``
makes of it), its given label, and its stable index in the dataset's own order. That
index is what purified labels, feature files and upstream label arrays are aligned by.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

__all__ = ["ImageDataset"]


class ImageDataset(Dataset):
    """Base class: images, labels and stable indices.

    Subclasses set ``name``, ``classes``, ``targets`` (``(N,)`` int64) and implement
    :meth:`load_image`. Datasets held in memory as one ``uint8`` array also set
    ``images`` (``(N, H, W, 3)``), which lets array-based code (k-means features)
    skip per-image decoding.
    """

    name: str = "dataset"
    classes: list[str]
    targets: np.ndarray
    images: np.ndarray | None = None

    def __init__(self, transform: Callable[[Image.Image], Any] | None = None) -> None:
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def load_image(self, index: int) -> Image.Image:
        """The RGB image at ``index``, untransformed."""
        if self.images is None:
            raise NotImplementedError(f"{type(self).__name__} must implement load_image()")
        return Image.fromarray(self.images[index])

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index]), int(index)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """A stable identifier of this dataset's content, for caches.

        The default hashes the name, length and labels, plus the image bytes when they
        are in memory. Subclasses backed by files may hash their file list instead.
        """
        h = hashlib.sha256()
        h.update(f"{self.name}:{len(self)}".encode())
        h.update(np.ascontiguousarray(self.targets, dtype=np.int64).tobytes())
        if self.images is not None:
            h.update(memoryview(np.ascontiguousarray(self.images)).cast("B"))
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={self.num_classes})"
