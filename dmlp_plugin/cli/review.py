"""``dmlp review``: one HTML page showing what purification changed, with the images.

    dmlp review purified.npz --images ~/data/cifar10 -o review.html
    dmlp review purified.npz --images ~/data/photos --top-k 500 -o review.html
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    from ..review import DEFAULT_TOP_K, THUMBNAIL_SIZE

    p = subparsers.add_parser(
        "review", help="an HTML page of what purification changed, with the images",
        description="Write one self-contained HTML page (opens offline in any browser) from a purified "
        ".npz and its images: a summary, the noise transition counted on the trusted set, the changes per "
        "class, and a gallery of the likeliest label errors with a class filter.")
    p.add_argument("result", type=Path, metavar="PURIFIED.npz", help="written by dmlp purify")
    p.add_argument("--images", type=Path, required=True, metavar="ROOT",
                   help="the images, in the order the labels were purified: an ImageFolder, the CIFAR python "
                   "folders, CDR's .npy layout or Clothing1M")
    p.add_argument("--dataset", choices=("cifar10", "cifar100", "clothing1m", "imagefolder", "cdr-npy"),
                   help="the form of ROOT (default: told from its contents)")
    p.add_argument("--split", default="train", help="dataset split (default: train)")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, metavar="K",
                   help=f"cards in the gallery (default: {DEFAULT_TOP_K})")
    p.add_argument("--thumbnail-size", type=int, default=THUMBNAIL_SIZE, metavar="PX",
                   help=f"longest side of a thumbnail (default: {THUMBNAIL_SIZE})")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.html", help="the page")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..argument_names import argument_names

    with argument_names({"top_k": "--top-k", "output": "--output"}):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io import check_output_path
    from ..result import PurifyResult
    from ..review import build_review_page, open_images
    from .console import console

    check_output_path(args.output, "output", suffixes=(".html", ".htm"))
    if args.thumbnail_size < 8:
        raise InputError(f"--thumbnail-size must be at least 8 pixels, got {args.thumbnail_size}")
    result = PurifyResult.load(args.result)
    images = open_images(args.images, args.dataset, args.split)
    page = build_review_page(result, images, args.output, top_k=args.top_k, thumbnail_size=args.thumbnail_size)
    console.print(f"wrote {page.path}: {page.cards:,} of {result.num_changed:,} changed labels shown "
                  f"({page.path.stat().st_size / 1e6:.1f} MB, opens offline)", highlight=False, markup=False)
    return 0
