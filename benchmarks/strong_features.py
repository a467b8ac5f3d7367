"""The packaged ImageNet backbones on CIFAR-10: images/s of extraction on this machine, and
the linear-probe test accuracy of their features, written to benchmarks/RESULTS.md.

    python benchmarks/strong_features.py                  # lite0 and lite2, ~3 min after extraction
    python benchmarks/strong_features.py --backbones efficientnet-lite0 --images 256
    python benchmarks/strong_features.py --extract efficientnet-lite2 --rows 10000   # the suite's lite2

Throughput: ``extract_features`` over ``--images`` CIFAR-10 training images (resized to the
model's resolution), after one warm-up batch, with the precision ``extract_features``
picks on this device. Probe: :func:`dmlp_plugin.features.linear_probe` (L-BFGS softmax
regression) on all 50,000 training features with their clean labels, scored on the
10,000 test images, from the features the suite caches in ``.bench-cache/`` (made by
``dmlp features``; the script prints the command when they are missing). Only the section
between ``<!-- backbones:start -->`` and ``<!-- backbones:end -->`` is rewritten.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

import suite_data as data
from driver import Section, add_no_write, add_threads, command_line, comma_list, git_revision, load_average, timestamp

SECTION = Section("backbones")


def _head(dataset, n: int):
    """The dataset's first ``n`` images (a shallow copy: the images are not copied)."""
    part = copy.copy(dataset)
    part.images, part.targets = dataset.images[:n], dataset.targets[:n]
    return part


def throughput(backbone: str, images: int, batch_size: int, device: str) -> float:
    """Images per second of extract_features on ``images`` training images."""
    from dmlp_plugin.data import load_dataset
    from dmlp_plugin.features import extract_features

    train = load_dataset("cifar10", data.CIFAR_ROOT)
    warm, subset = _head(train, batch_size), _head(train, images)
    extract_features(warm, backbone, cache=False, progress=False, device=device, batch_size=batch_size)
    start = time.perf_counter()
    extract_features(subset, backbone, cache=False, progress=False, device=device, batch_size=batch_size)
    return images / (time.perf_counter() - start)


def extract_rows(backbone: str, rows: int, device: str) -> Path:
    """The features of the first ``rows`` training images, saved where the suite reads them
    (for a backbone too slow on this CPU to embed all 60,000 images)."""
    from dmlp_plugin.data import load_dataset
    from dmlp_plugin.features import extract_features, save_features

    fs = data.FEATURE_SETS[backbone]
    if fs.rows != rows:
        raise SystemExit(f"suite_data.FEATURE_SETS[{backbone!r}] covers {fs.rows} rows, not {rows}")
    subset = _head(load_dataset("cifar10", data.CIFAR_ROOT), rows)
    train = extract_features(subset, backbone, device=device, cache_dir=data.CACHE / "features")
    save_features(fs.path(), {"train": train})
    return fs.path()


def probe(name: str) -> tuple[float | None, float] | None:
    """Linear-probe accuracy of the cached features (None when they are missing): on the test
    images after training on all 50,000 rows (None for a set made for fewer rows), and 5-fold
    cross-fitted on the first 10,000 training rows, which every feature set covers."""
    from dmlp_plugin.features import linear_probe

    fs = data.FEATURE_SETS[name]
    if not fs.path().is_file():
        print(f"{name}: no cached features; make them with\n    {fs.how_to_make()}")
        return None
    x, y = data.features(name), data.clean_labels()[:fs.rows]
    test = None
    if fs.rows == len(data.clean_labels()):
        test = float(linear_probe(x, y, data.test_features(name), data.test_labels()))
    x, y = x[:10000], y[:10000]
    folds = np.arange(len(y)) % 5
    right = sum(float(linear_probe(x[folds != k], y[folds != k], x[folds == k], y[folds == k])) * (folds == k).sum()
                for k in range(5))
    return test, right / len(y)


def _probe_cells(name: str) -> str:
    scored = probe(name)
    if scored is None:
        return " | "
    return " | ".join("" if acc is None else f"{100 * acc:.2f}" for acc in scored)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="efficientnet-lite0,efficientnet-lite2")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    add_threads(p, 2)
    add_no_write(p)
    p.add_argument("--extract", metavar="BACKBONE", help="embed the first --rows training images and stop")
    p.add_argument("--rows", type=int, default=10000)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.extract:
        print(f"wrote {extract_rows(args.extract, args.rows, args.device)}")
        return 0
    rows = []
    for backbone in comma_list(args.backbones):
        rate = throughput(backbone, args.images, args.batch_size, args.device)
        rows.append(f"| {backbone} | {args.device} ({args.threads} threads) | {rate:.1f} | {_probe_cells(backbone)} |")
        print(rows[-1], flush=True)
    kmeans = _probe_cells("kmeans")
    section = SECTION.wrap([
        "## Strong features: the packaged ImageNet backbones", "",
        f"Run {timestamp()} at `{git_revision()}` by `{command_line('strong_features.py', argv)}`; "
        f"load average at the end {load_average()}. Images/s: `extract_features` over {args.images} CIFAR-10 images "
        "resized to the model's resolution (224 px lite0, 260 px lite2). Probe: softmax regression on all "
        "50,000 training features with clean labels, test accuracy on the 10,000 test images; and 5-fold "
        "cross-fitted on the first 10,000 training rows, the rows every suite feature set covers (lite2 is "
        "made for those only: 2.5 hours for all 60,000 images on this CPU). These "
        "features are supervised (ImageNet labels), unlike the paper's self-supervised SimCLR features "
        "(docs/features.md).", "",
        "| backbone | device | images/s | linear probe, test accuracy (%) | 5-fold probe, first 10,000 rows (%) |",
        "|---|---|---|---|---|", *rows,
        f"| k-means (../shared, for contrast) | | | {kmeans} |", ""])
    SECTION.emit(section, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
