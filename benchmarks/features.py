"""Benchmark of the feature extractors on real CIFAR-10, written to benchmarks/RESULTS.md.

    python benchmarks/features.py                       # both parts, ~6 min on 2 cores
    python benchmarks/features.py --skip-kmeans         # backbone throughput only

1. Throughput (images/s) of ``extract_features`` with resnet18-cifar on this machine's
   CPU (weights do not change the speed, so a random initialisation is used).
2. k-means features (Coates & Ng 2011) for all 60,000 images: wall time of fitting and
   encoding everything, then a linear probe (L-BFGS logistic regression, 50k train / 10k
   test) on the 512-d output, next to the same probe on the reference features in
   ``../shared/features`` when present.

Only the section between ``<!-- features:start -->`` and ``<!-- features:end -->`` of
RESULTS.md is rewritten. The k-means features are saved outside the repository
(``~/.cache/dmlp/features/cifar10_kmeans_pca512.npz`` by default).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from driver import CIFAR_ROOT, RESULTS, Section, add_no_write, load_average, shared_dir

from dmlp_plugin.data import CIFAR10, ArrayDataset
from dmlp_plugin.features import extract_features, kmeans_features, linear_probe, save_features
from dmlp_plugin.features._hardware import fast_bfloat16

SECTION = Section("features")


def backbone_throughput(data: CIFAR10, n: int, batch_size: int, amp: bool) -> dict:
    subset = ArrayDataset(data.images[:n], data.targets[:n], name="cifar10-test-head")
    opts = dict(cache=False, progress=False, batch_size=batch_size, device="cpu", amp=amp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: speed only
        # warm-up: allocator and oneDNN kernel selection
        extract_features(ArrayDataset(data.images[:batch_size], data.targets[:batch_size]), "resnet18-cifar", **opts)
        load = load_average()
        start = time.perf_counter()
        extract_features(subset, "resnet18-cifar", **opts)
        seconds = time.perf_counter() - start
    precision = "bfloat16 autocast (AMX)" if amp and fast_bfloat16(torch.device("cpu")) else "float32"
    return {"images": n, "seconds": seconds, "rate": n / seconds, "batch": batch_size, "load": load,
            "precision": precision}


def kmeans_run(train: CIFAR10, test: CIFAR10, centroids: int, dim: int, out: Path) -> dict:
    load_before = load_average()
    start = time.perf_counter()
    f_train, f_test = kmeans_features(train, test, num_centroids=centroids, output_dim=dim, cache=False)
    seconds = time.perf_counter() - start
    load_after = load_average()
    save_features(out, {"train": f_train.astype(np.float32), "test": f_test.astype(np.float32)})
    start = time.perf_counter()
    acc = linear_probe(f_train, train.targets, f_test, test.targets)
    probe_seconds = time.perf_counter() - start
    result = {"seconds": seconds, "acc": acc, "probe_seconds": probe_seconds, "centroids": centroids,
              "dim": dim, "load_before": load_before, "load_after": load_after, "path": out, "ref_acc": None}
    ref = shared_dir() / "features" / "cifar10_kmeans_pca512.npz"
    if ref.is_file():
        with np.load(ref) as z:
            result["ref_acc"] = linear_probe(z["train"], train.targets, z["test"], test.targets)
    return result


def render(bb: list[dict], km: dict | None) -> str:
    cpu = platform.processor() or platform.machine()
    lines = ["## Features (`benchmarks/features.py`)", "",
             f"Machine: {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
             f"{torch.get_num_threads()} torch threads. Other jobs shared the cores, so the load "
             "average (1/5/15 min, from `uptime`) is given with each timing.", ""]
    if bb:
        lines += ["| backbone | device | precision | batch | images | seconds | images/s | load |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| resnet18-cifar (32x32) | CPU | {r['precision']} | {r['batch']} | {r['images']} | "
                  f"{r['seconds']:.1f} | **{r['rate']:.0f}** | {r['load']} |" for r in bb]
        lines.append("")
    if km is not None:
        ref = f"{km['ref_acc']:.2%}" if km["ref_acc"] is not None else "n/a"
        lines += ["| k-means features, CIFAR-10 | centroids | dims | wall time, 60k images (fit + encode + PCA) "
                  "| linear probe (test acc.) | reference features, same probe | load before / after |",
                  "|---|---|---|---|---|---|---|",
                  f"| Coates & Ng, triangle, 4 quadrants, PCA | {km['centroids']} | {km['dim']} | "
                  f"**{km['seconds']:.0f} s** | **{km['acc']:.2%}** | {ref} | {km['load_before']} → "
                  f"{km['load_after']} |", "",
                  f"Probe: multinomial logistic regression, full-batch L-BFGS, 100 iterations, weight decay "
                  f"1e-3, standardised inputs, trained on the 50,000 clean training labels "
                  f"({km['probe_seconds']:.0f} s). Targets (issue 3): ≤ 10 min, ≥ 65%.", ""]
    return SECTION.wrap(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=CIFAR_ROOT, help="folder holding cifar-10-batches-py")
    p.add_argument("--skip-backbone", action="store_true")
    p.add_argument("--skip-kmeans", action="store_true")
    p.add_argument("--images", type=int, default=2048, help="images timed for the backbone (default 2048)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--centroids", type=int, default=1600)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--features-out", type=Path,
                   default=Path.home() / ".cache" / "dmlp" / "features" / "cifar10_kmeans_pca512.npz")
    p.add_argument("--results", type=Path, default=RESULTS)
    add_no_write(p)
    args = p.parse_args(argv)

    train, test = CIFAR10(args.root, "train"), CIFAR10(args.root, "test")
    bb, km = [], None
    if not args.skip_backbone:
        amps = [False, True] if fast_bfloat16(torch.device("cpu")) else [False]
        for amp in amps:
            r = backbone_throughput(test, args.images, args.batch_size, amp)
            bb.append(r)
            print(f"resnet18-cifar CPU {r['precision']}: {r['rate']:.0f} images/s ({r['images']} in "
                  f"{r['seconds']:.1f} s, load {r['load']})", flush=True)
    if not args.skip_kmeans:
        km = kmeans_run(train, test, args.centroids, args.dim, args.features_out)
        print(f"k-means: {km['seconds']:.0f} s for 60k images, probe {km['acc']:.4f} "
              f"(reference {km['ref_acc']}), load {km['load_before']} -> {km['load_after']}; "
              f"features in {km['path']}", flush=True)
    section = render(bb, km)
    if args.no_write:
        print(section)
    else:
        SECTION.write(section, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
