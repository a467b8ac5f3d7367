"""``dmlp data cifar10 --format METHOD DIR``: CIFAR-10 laid out as an upstream reads it.

    dmlp data cifar10 --root ~/data --format dividemix ~/data/cifar-10      # --data_path
    dmlp data cifar10 --root ~/data --format cdr ~/CDR                      # CDR's data/cifar10/*.npy
    dmlp data cifar10 --from-folder ~/cifar10-png ~/data                   # ~/data/cifar-10-batches-py

``--from-folder`` builds the pickles from a tree of image files; the order it assumes is in
:mod:`dmlp_plugin.data.cifar_folder`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "FORMATS"]

#: --format value -> layout (dmlp_plugin.data.layouts); upstream names and layout names both work.
FORMATS = {"dividemix": "pickles", "elr": "torchvision", "elr_plus": "torchvision", "coteaching": "torchvision",
           "cdr": "cdr-npy", "pickles": "pickles", "torchvision": "torchvision", "cdr-npy": "cdr-npy"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "data", help="lay CIFAR-10 out as an upstream codebase reads it, or build it from image files",
        description="Write CIFAR-10 from a standard cifar-10-batches-py folder (--root) in the layout an upstream "
        "reads: dividemix (the flat pickles, its --data_path), elr / coteaching (torchvision's "
        "cifar-10-batches-py under DIR), cdr (DIR/data/cifar10/*.npy; run CDR from DIR). With --from-folder "
        "IMAGES, build it from image files instead: IMAGES/train/<class>/*.png|jpg and IMAGES/test/<class>/...; "
        "classes numbered in folder-name order (CIFAR-10's names give CIFAR-10's labels), images in natural "
        "file-name order, each split class by class unless --train-order/--test-order give the class at each "
        "position; written to DIR/cifar-10-batches-py unless --format says otherwise.")
    p.add_argument("dataset", choices=["cifar10"], help="dataset (cifar10)")
    p.add_argument("dest", type=Path, help="folder to write into")
    p.add_argument("--format", choices=sorted(FORMATS),
                   help="upstream (or layout) name; required with --root (default with --from-folder: torchvision, "
                   "i.e. DIR/cifar-10-batches-py)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", type=Path, metavar="DIR",
                        help="folder holding cifar-10-batches-py (or that folder itself)")
    source.add_argument("--from-folder", type=Path, metavar="IMAGES",
                        help="a tree of 32x32 images, IMAGES/train/<class>/ and IMAGES/test/<class>/")
    p.add_argument("--train-order", type=Path, metavar="LABELS.npy",
                   help="with --from-folder: the class of each training position (e.g. the original training "
                   "labels, which rebuild the original order when image k of class c is its k-th in that order)")
    p.add_argument("--test-order", type=Path, metavar="LABELS.npy",
                   help="with --from-folder: the same for the test set")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..data.layouts import write_cifar10_layout
    from ..errors import InputError
    from .console import console

    if args.from_folder is not None:
        return _from_folder(args)
    if args.format is None:
        raise InputError("--root needs --format (which layout to write: " + ", ".join(sorted(FORMATS)) + ")")
    if args.train_order or args.test_order:
        raise InputError("--train-order and --test-order apply to --from-folder")
    written = write_cifar10_layout(args.root, FORMATS[args.format], args.dest)
    console.print(f"wrote {len(written)} file(s) for {args.format} under {args.dest}", highlight=False)
    return 0


def _from_folder(args: argparse.Namespace) -> int:
    from ..data.cifar_folder import build_cifar10_batches
    from ..data.layouts import write_cifar10_layout
    from ..io import load_array
    from .console import console

    layout = FORMATS[args.format or "torchvision"]
    orders = [None if path is None else load_array(path, what=what)
              for path, what in ((args.train_order, "--train-order"), (args.test_order, "--test-order"))]
    dest = args.dest.expanduser()
    folder = dest if layout == "pickles" else dest / "cifar-10-batches-py"
    written = build_cifar10_batches(args.from_folder, folder, train_order=orders[0], test_order=orders[1])
    if layout == "cdr-npy":
        written += write_cifar10_layout(dest, layout, dest)
    console.print(f"wrote {len(written)} file(s) under {dest} from the images in {args.from_folder}", highlight=False)
    return 0
