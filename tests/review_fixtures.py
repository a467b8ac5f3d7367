"""Tiny image sets and results for the review, labelling-page and trusted-set tests.

Import what a module uses (``from review_fixtures import ...``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from dmlp_plugin import PurifyResult

CLASSES = ["cat", "dog", "<em>ship"]  # a name with markup: the pages must show it as text


def image_folder(root: Path, per_class: int = 10, size: tuple[int, int] = (40, 30)) -> Path:
    """``root/<class>/NNN.png`` for the classes of :data:`CLASSES`: the images of the k-th
    name are bright in colour channel k, so their mean colour tells the class. (ImageFolder
    numbers the classes in sorted folder order: ``<em>ship``, cat, dog.)"""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 60, (size[1], size[0], 3)).astype(np.uint8)
            pixels[..., c] += 150
            Image.fromarray(pixels).save(folder / f"{k:03d}.png")
    return root


def mean_colours(images) -> np.ndarray:
    """``(N, 3)`` float32 mean colour of every image: features that separate the classes."""
    return np.stack([np.asarray(images.load_image(i), np.float32).mean((0, 1)) / 255
                     for i in range(len(images))]).astype(np.float32)


def cifar_folder(root: Path, n: int = 12, classes: list[str] | None = None) -> tuple[Path, np.ndarray]:
    """A ``cifar-10-batches-py`` folder of 5 batches of ``n // 5`` random images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    per = n // 5
    labels = rng.integers(0, 10, 5 * per)
    for b in range(5):
        batch = {"labels": labels[b * per:(b + 1) * per].tolist(),
                 "data": rng.integers(0, 256, (per, 3072)).astype(np.uint8)}
        with open(folder / f"data_batch_{b + 1}", "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"labels": [0], "data": np.zeros((1, 3072), np.uint8)}, fh, protocol=2)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": classes or [f"class{k}" for k in range(10)]}, fh, protocol=2)
    return root, labels


def ranked_result(given: np.ndarray, num_classes: int, *, changed_every: int = 3, trusted: np.ndarray | None = None,
                  class_names: list[str] | None = None) -> PurifyResult:
    """A result whose changed rows are every ``changed_every``-th, moved to the next class,
    with a given-label quality that falls with the row index (so ``label_issues`` ranks
    the last changed row first)."""
    n = len(given)
    purified = given.copy()
    purified[::changed_every] = (given[::changed_every] + 1) % num_classes
    quality = np.linspace(0.4, 0.01, n)
    soft = np.zeros((n, num_classes), np.float32)
    rest = 1.0 - quality
    soft[np.arange(n), given] = quality
    soft[np.arange(n), purified] += np.where(purified != given, rest, 0)
    soft[np.arange(n), given] += np.where(purified == given, rest, 0)
    kwargs = {} if trusted is None else {"trusted_indices": np.asarray(trusted, np.int64)}
    return PurifyResult.from_soft_labels(soft, given, class_names=class_names, **kwargs)
