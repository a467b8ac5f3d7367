"""The benchmark suite's inputs: feature sets, row subsets, noise, and trusted sets.

Everything is a pure function of (feature set, rows, noise, trusted size, draw), so every
method of a cell sees the same labels and the same trusted rows. Not part of the package.

- **Feature sets** (:data:`FEATURE_SETS`): the CIFAR-10 k-means features from ``../shared``
  (a 66% linear probe), and the ImageNet-trained EfficientNet-Lite0 and -Lite2 features of
  the same images (``dmlp features --backbone efficientnet-liteN``), cached in
  ``.bench-cache/`` (git-ignored). Lite2 covers the first 10,000 training images only: at
  7 images/s on this CPU, all 60,000 would take 2.5 hours.
- **Rows**: all 50,000 training images, or the first 10,000 (original order).
- **Noise** (:data:`NOISES`): DivideMix's symmetric 20/50/80/90% and asymmetric 40%, the
  CIFAR-10N human label sets ``aggre``/``random1``/``worse``, and instance-dependent noise
  at 40% (Xia et al. 2020, on the raw pixels, so it is the same for every feature set).
- **Trusted sets**: ``k`` rows of each clean class, drawn at random among the rows.
- **Draws**: a draw seeds the noise and the trusted set. Draws 100-102 are for choosing
  settings; draws 0-1 report, and were never used to choose.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Where the inputs and the cache are: the driver's, shared by every benchmark script.
from driver import CACHE, CIFAR_N, CIFAR_ROOT, SHARED, comma_list, write_npy

NUM_CLASSES = 10
TUNING_DRAWS = (100, 101, 102)
BENCHMARK_DRAWS = (0, 1)


@dataclass(frozen=True)
class FeatureSet:
    name: str
    title: str
    strong: bool  # counted among "the strong features' rows"
    rows: int = 50000  # the first training rows the cached set covers

    def path(self) -> Path:
        if self.name == "kmeans":
            return SHARED / "features" / "cifar10_kmeans_pca512.npz"
        if self.rows < 50000:
            return CACHE / f"cifar10_{self.name}-{self.rows // 1000}k.npz"
        return CACHE / f"cifar10_{self.name}.npz"

    def how_to_make(self) -> str:
        if self.name == "kmeans":
            return ("the shared k-means features (../shared/features), or make them: dmlp features --dataset cifar10 "
                    f"--root {CIFAR_ROOT} --method kmeans --split train,test -o {self.path()}")
        backbone = self.name
        if self.rows < 50000:
            return f"python benchmarks/strong_features.py --extract {backbone} --rows {self.rows}"
        return (f"dmlp features --dataset cifar10 --root {CIFAR_ROOT} --split train,test --backbone {backbone} "
                f"--cache-dir {CACHE / 'features'} -o {self.path()}")


FEATURE_SETS = {fs.name: fs for fs in (
    FeatureSet("kmeans", "k-means (CPU, unsupervised)", False),
    FeatureSet("efficientnet-lite0", "EfficientNet-Lite0 (ImageNet)", True),
    FeatureSet("efficientnet-lite2", "EfficientNet-Lite2 (ImageNet)", True, rows=10000),
)}

#: key -> (title, kind, rate)
NOISES = {
    "sym20": ("symmetric 20%", "symmetric", 0.2),
    "sym50": ("symmetric 50%", "symmetric", 0.5),
    "sym80": ("symmetric 80%", "symmetric", 0.8),
    "sym90": ("symmetric 90%", "symmetric", 0.9),
    "asym40": ("asymmetric 40%", "asymmetric", 0.4),
    "aggre": ("CIFAR-10N aggregate", "cifar-n", "aggre_label"),
    "random1": ("CIFAR-10N random-1", "cifar-n", "random_label1"),
    "worse": ("CIFAR-10N worst", "cifar-n", "worse_label"),
    "inst40": ("instance 40%", "instance", 0.4),
}
ROWS = (10000, 50000)
TRUSTED_PER_CLASS = (10, 25, 100)


@dataclass(frozen=True)
class Cell:
    features: str
    rows: int
    noise: str
    trusted: int  # per class
    draw: int

    @property
    def key(self) -> str:
        return f"{self.features}-{self.rows // 1000}k-{self.noise}-t{self.trusted}-d{self.draw}"


class MissingInput(SystemExit):
    pass


@functools.lru_cache(maxsize=4)
def features(name: str) -> np.ndarray:
    """``(rows, d)`` float32 training features of a feature set, in the original order (its
    first ``FeatureSet.rows`` training images)."""
    fs = FEATURE_SETS[name]
    if not fs.path().is_file():
        raise MissingInput(f"missing features {fs.path()}: make them with\n    {fs.how_to_make()}")
    with np.load(fs.path()) as z:
        x = z["train"]
    return np.ascontiguousarray(x, dtype=np.float32)


@functools.lru_cache(maxsize=2)
def test_features(name: str) -> np.ndarray:
    with np.load(FEATURE_SETS[name].path()) as z:
        return np.ascontiguousarray(z["test"], dtype=np.float32)


@functools.lru_cache(maxsize=1)
def clean_labels() -> np.ndarray:
    return np.asarray(_cifar("train").targets, dtype=np.int64)


@functools.lru_cache(maxsize=2)
def _cifar(split: str):
    from dmlp_plugin.data import load_dataset

    if not (CIFAR_ROOT / "cifar-10-batches-py").is_dir():
        raise MissingInput(f"missing the CIFAR-10 folder {CIFAR_ROOT}: build it with "
                           f"python ../shared/tools/build_cifar10.py {CIFAR_ROOT} (or set DMLP_CIFAR_ROOT)")
    return load_dataset("cifar10", CIFAR_ROOT, split)


def test_labels() -> np.ndarray:
    return np.asarray(_cifar("test").targets, dtype=np.int64)


@functools.lru_cache(maxsize=1)
def _pixels() -> np.ndarray:
    """Flattened raw training images in [0, 1], what instance-dependent noise is defined on."""
    return (_cifar("train").images.reshape(50000, -1).astype(np.float32) / 255.0)


@functools.lru_cache(maxsize=64)
def noisy_labels(noise: str, rows: int, draw: int) -> np.ndarray:
    """The given labels of the first ``rows`` training images under ``noise`` and ``draw``
    (cached on disk: instance noise takes a minute on the pixels)."""
    path = CACHE / "suite" / "noise" / f"{noise}-{rows}-d{draw}.npy"
    if path.is_file():
        return np.load(path)
    labels = _make_noisy_labels(noise, rows, draw)
    write_npy(path, labels)
    return labels


def _make_noisy_labels(noise: str, rows: int, draw: int) -> np.ndarray:
    from dmlp_plugin.noise import load_cifar_n, make_noisy_labels

    clean = clean_labels()[:rows]
    _, kind, rate = NOISES[noise]
    if kind == "cifar-n":
        if not CIFAR_N.is_file():
            raise MissingInput(f"missing CIFAR-10N labels {CIFAR_N}: CIFAR-10_human.pt from "
                               "github.com/UCSC-REAL/cifar-10-100n (data/), or set DMLP_CIFAR_N")
        return load_cifar_n(CIFAR_N, key=rate, clean_labels=clean_labels()).noisy_labels[:rows].astype(np.int64)
    extra = {"features": _pixels()[:rows]} if kind == "instance" else {}
    result = make_noisy_labels(clean, kind=kind, rate=rate, num_classes=NUM_CLASSES, dataset="cifar10",
                               convention="dividemix" if kind in ("symmetric", "asymmetric") else "exclusive",
                               seed=draw, **extra)
    return result.noisy_labels.astype(np.int64)


def trusted_rows(rows: int, per_class: int, draw: int) -> np.ndarray:
    """``per_class`` rows of each clean class, at random (seeded by the draw, apart from the noise)."""
    clean = clean_labels()[:rows]
    rng = np.random.default_rng(10_000 + draw)
    picks = [rng.choice(np.flatnonzero(clean == c), per_class, replace=False) for c in range(NUM_CLASSES)]
    return np.sort(np.concatenate(picks))


def cell_inputs(cell: Cell):
    """``(features, noisy, trusted, clean)`` of a cell; features are a view of the cached array."""
    x = features(cell.features)[:cell.rows]
    return x, noisy_labels(cell.noise, cell.rows, cell.draw), trusted_rows(cell.rows, cell.trusted, cell.draw), \
        clean_labels()[:cell.rows]


def cells_of(args: argparse.Namespace) -> list[Cell]:
    """The cells asked for, draw-major (a whole table per draw), cheapest rows first."""
    draws = _draws(args.draws)
    out = []
    for draw, rows, fs, noise, trusted in itertools.product(draws, args.rows, args.features, args.noises,
                                                            args.trusted):
        if rows <= FEATURE_SETS[fs].rows:  # a feature set made for fewer rows has no larger cells
            out.append(Cell(fs, rows, noise, trusted, draw))
    return out


def _draws(text: str) -> tuple[int, ...]:
    named = {"tune": TUNING_DRAWS, "bench": BENCHMARK_DRAWS}
    if text in named:
        return named[text]
    return tuple(comma_list(text, int))


if __name__ == "__main__":  # python benchmarks/suite_data.py: what is there and what is missing
    for fs in FEATURE_SETS.values():
        print(f"{fs.name:20s} {'ok' if fs.path().is_file() else 'missing: ' + fs.how_to_make()}")
    print(f"{'CIFAR-10N':20s} {'ok' if CIFAR_N.is_file() else 'missing'}")
    sys.exit(0)
