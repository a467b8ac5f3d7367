"""Datasets: CIFAR-10/100, Clothing1M, any ImageFolder, and plain arrays.

Every dataset yields ``(image, label, index)`` (see :class:`ImageDataset`).
"""

from .base import ImageDataset

__all__ = ["ImageDataset"]
