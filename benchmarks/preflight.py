"""The pre-flight feature check: what it costs, and what it measures on the CIFAR-10 features.

    python benchmarks/preflight.py            # both parts; the second needs ../shared
    python benchmarks/preflight.py --cost     # only the timings (synthetic features)

1. Cost: ``check_trusted_features`` on synthetic 10-class features of 1,000 x 512 and
   10,000 x 2,048 (5 folds), median of 3 calls, at 1 torch thread and at the default.
2. The CIFAR-10 k-means features (``../shared``): the cross-fitted probe's accuracy,
   chance and skill on trusted sets of 10, 25, 50, 100 and 500 clean rows per class
   (3 draws each), next to ``WEAK_SKILL_THRESHOLD``.

Prints Markdown tables; writes nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from driver import add_shared, shared_dir


def cost() -> None:
    from dmlp_plugin.preflight import check_trusted_features

    print("| rows x dims | threads | seconds (median of 3) |\n|---|---|---|")
    default_threads = torch.get_num_threads()
    for n, d in ((1_000, 512), (10_000, 2_048)):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 10, n)
        x = (rng.standard_normal((n, d)) + np.eye(10, d)[y] * 2).astype(np.float32)
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                check_trusted_features(x, y, device="cpu")
                times.append(time.perf_counter() - t0)
            print(f"| {n:,} x {d:,} | {threads} | {statistics.median(times):.2f} |")
    torch.set_num_threads(default_threads)


def kmeans(shared: Path) -> None:
    from dmlp_plugin.preflight import WEAK_SKILL_THRESHOLD, check_trusted_features
    from dmlp_plugin.trusted import draw_trusted_set

    features = np.load(shared / "features" / "cifar10_kmeans_pca512.npz")["train"]
    clean = np.load(shared / "data" / "cifar10" / "train_labels_original_order.npy")
    print(f"\nCIFAR-10 k-means features; weak below skill {WEAK_SKILL_THRESHOLD}\n")
    print("| per class | accuracy (3 draws) | skill | weak | seconds |\n|---|---|---|---|---|")
    for per in (10, 25, 50, 100, 500):
        checks = []
        for seed in range(3):
            rows = draw_trusted_set(clean, per_class=per, seed=seed)
            checks.append(check_trusted_features(features[rows], clean[rows], seed=seed, device="cpu"))
        acc = [c.accuracy for c in checks]
        print(f"| {per} | {np.mean(acc):.1%} ({min(acc):.1%}-{max(acc):.1%}) | {np.mean([c.skill for c in checks]):.2f} "
              f"| {sum(c.weak for c in checks)}/3 | {np.mean([c.seconds for c in checks]):.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shared(parser)
    parser.add_argument("--cost", action="store_true", help="only the timings")
    args = parser.parse_args()
    shared = shared_dir(args.shared)
    cost()
    if not args.cost:
        if not (shared / "features" / "cifar10_kmeans_pca512.npz").is_file():
            print(f"\n(no k-means features in {shared}: part 2 skipped)")
        else:
            kmeans(shared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
