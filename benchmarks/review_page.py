"""The review page on real CIFAR-10: build time, page size, and the README's screenshot.

    python benchmarks/review_page.py                       # writes docs/img/review.png
    python benchmarks/review_page.py --out /tmp/review     # keep the page and the result too

Input (as ``purify_cifar10.py``): the shared k-means features, the clean training labels,
and the CIFAR-10 folder built from ``../shared`` (``~/.cache/dmlp/cifar10``). 40% symmetric
noise, 1,000 random trusted rows, the default config with one hidden layer (half the
network's time; the page is the subject here). Then ``dmlp review``'s page with the top
200 issues, rendered by headless Chromium (Debian's ``chromium`` package).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from driver import CIFAR_ROOT, ROOT, add_shared, shared_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shared(parser)
    parser.add_argument("--cifar-root", type=Path, default=CIFAR_ROOT)
    parser.add_argument("--out", type=Path, help="folder for purified.npz and review.html (default: a temporary one)")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "review.png")
    args = parser.parse_args()

    from dmlp_plugin import PurifyConfig, purify_dataset
    from dmlp_plugin.noise import make_noisy_labels
    from dmlp_plugin.review import build_review_page, open_images
    from dmlp_plugin.review.browser import Chromium
    from dmlp_plugin.trusted import draw_trusted_set

    shared = shared_dir(args.shared)
    features = np.load(shared / "features" / "cifar10_kmeans_pca512.npz")["train"]
    clean = np.load(shared / "data" / "cifar10" / "train_labels_original_order.npy")
    images = open_images(args.cifar_root)
    if not np.array_equal(images.targets, clean):
        sys.exit(f"{args.cifar_root} does not hold the CIFAR-10 training set in the shared labels' order")
    noisy = make_noisy_labels(clean, kind="symmetric", rate=0.4, seed=0).noisy_labels
    trusted = draw_trusted_set(clean, size=1000, seed=1)
    t0 = time.perf_counter()
    result = purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted],
                            config=PurifyConfig(mlp_layers=1), class_names=images.classes, seed=0, progress=True)
    purify_s = time.perf_counter() - t0
    out = args.out or Path(tempfile.mkdtemp(prefix="dmlp-review-"))
    result.save(out / "purified.npz")
    t0 = time.perf_counter()
    page = build_review_page(result, images, out / "review.html")
    build_s = time.perf_counter() - t0
    with Chromium(width=1280, height=1000) as browser:
        t0 = time.perf_counter()
        browser.open(page.path)
        render_s = time.perf_counter() - t0
        browser.screenshot(args.png, full_height=1500)
    rest = np.setdiff1d(np.arange(len(clean)), trusted)
    print(f"label accuracy {np.mean(noisy[rest] == clean[rest]):.2%} -> {result.accuracy(clean, exclude_trusted=True):.2%}; "
          f"{result.num_changed:,} changed; purify {purify_s:.0f} s")
    print(f"page: {page.cards} cards, {page.path.stat().st_size / 1e6:.2f} MB, built in {build_s:.2f} s, "
          f"loaded with its images in {render_s:.2f} s; screenshot {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
