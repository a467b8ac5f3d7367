"""The packaged ImageNet backbones on CIFAR-10: images/s of extraction on this machine, and
the linear-probe test accuracy of their features, written to benchmarks/RESULTS.md.

    python benchmarks/strong_features.py                  # lite0 and lite2, ~3 min after extraction
    python benchmarks/strong_features.py --backbones efficientnet-lite0 --images 256

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
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import suite_data as data  # noqa: E402
from results_file import write_section  # noqa: E402

START, END = "<!-- backbones:start -->", "<!-- backbones:end -->"


def throughput(backbone: str, images: int, batch_size: int, device: str) -> float:
    """Images per second of extract_features on ``images`` training images."""
    from dmlp_plugin.data import load_dataset
    from dmlp_plugin.features import extract_features

    subset = load_dataset("cifar10", data.CIFAR_ROOT)
    warm = load_dataset("cifar10", data.CIFAR_ROOT)
    warm.images, warm.targets = subset.images[:batch_size], subset.targets[:batch_size]
    subset.images, subset.targets = subset.images[:images], subset.targets[:images]
    extract_features(warm, backbone, cache=False, progress=False, device=device, batch_size=batch_size)
    start = time.perf_counter()
    extract_features(subset, backbone, cache=False, progress=False, device=device, batch_size=batch_size)
    return images / (time.perf_counter() - start)


def probe(name: str) -> float | None:
    """Test accuracy of a linear probe on the cached features (None when they are missing)."""
    from dmlp_plugin.features import linear_probe

    if not data.FEATURE_SETS[name].path().is_file():
        print(f"{name}: no cached features; make them with\n    {data.FEATURE_SETS[name].how_to_make()}")
        return None
    return float(linear_probe(data.features(name), data.clean_labels(), data.test_features(name),
                              data.test_labels()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="efficientnet-lite0,efficientnet-lite2")
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for backbone in args.backbones.split(","):
        rate = throughput(backbone, args.images, args.batch_size, args.device)
        acc = probe(backbone)
        rows.append(f"| {backbone} | {args.device} ({args.threads} threads) | {rate:.1f} | "
                    f"{'' if acc is None else f'{100 * acc:.2f}'} |")
        print(rows[-1], flush=True)
    kmeans = probe("kmeans")
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    section = "\n".join([
        START, "## Strong features: the packaged ImageNet backbones", "",
        f"Run {datetime.datetime.now():%Y-%m-%d %H:%M} at `{data.git_revision()}` by "
        f"`python benchmarks/strong_features.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
        f"load average at the end {load}. Images/s: `extract_features` over {args.images} CIFAR-10 images "
        "resized to the model's resolution (224 px lite0, 260 px lite2). Probe: softmax regression on all "
        "50,000 training features with clean labels, test accuracy on the 10,000 test images. These "
        "features are supervised (ImageNet labels), unlike the paper's self-supervised SimCLR features "
        "(docs/features.md).", "",
        "| backbone | device | images/s | linear probe, test accuracy (%) |", "|---|---|---|---|", *rows,
        f"| k-means (../shared, for contrast) | | | {'' if kmeans is None else f'{100 * kmeans:.2f}'} |",
        "", END])
    print(section)
    if not args.no_write:
        write_section(HERE / "RESULTS.md", section, START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
