"""toylnl's data: Gaussian blobs, a seeded train/val split, and a label-file reader."""

from __future__ import annotations

import numpy as np


def make_blobs(num_samples: int = 1000, num_classes: int = 4, dim: int = 8,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, dim) float32, clean labels (N,) int64)``: one Gaussian blob per class."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, num_classes, size=num_samples).astype(np.int64)
    centres = rng.normal(0, 3, size=(num_classes, dim))
    features = centres[labels] + rng.normal(0, 1, size=(num_samples, dim))
    return features.astype(np.float32), labels


def load_label_file(path: str) -> np.ndarray:
    """toylnl's label format: a text file, one integer label per line, in sample order."""
    return np.loadtxt(path, dtype=np.int64, ndmin=1)


def train_val_split(num_samples: int, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split as toylnl always has: seed the global RNG, permute, validation first."""
    np.random.seed(seed)
    perm = np.random.permutation(num_samples)
    num_val = int(num_samples * val_ratio)
    return perm[num_val:], perm[:num_val]


class NoisyBlobs:
    """toylnl's dataset: the training (or validation) part of the split.

    ``dataset[i]`` is ``(features, label, i)``; labels live in ``train_noisy_labels``.
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, *, train: bool = True,
                 val_ratio: float = 0.1, split_seed: int = 1) -> None:
        train_idx, val_idx = train_val_split(len(labels), val_ratio, split_seed)
        idx = train_idx if train else val_idx
        self.data = np.asarray(features)[idx]
        self.train_noisy_labels = [int(y) for y in np.asarray(labels)[idx]]

    def __len__(self) -> int:
        return len(self.train_noisy_labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, int]:
        return self.data[i], self.train_noisy_labels[i], i
