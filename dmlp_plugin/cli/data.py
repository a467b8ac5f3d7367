"""``dmlp data cifar10 --format METHOD DIR``: CIFAR-10 laid out as an upstream reads it.

    dmlp data cifar10 --root ~/data --format dividemix ~/data/cifar-10      # --data_path
    dmlp data cifar10 --root ~/data --format cdr ~/CDR                      # CDR's data/cifar10/*.npy
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
        "data", help="lay CIFAR-10 out as an upstream codebase reads it",
        description="Write CIFAR-10 from a standard cifar-10-batches-py folder in the layout an upstream "
        "reads: dividemix (the flat pickles, its --data_path), elr / coteaching (torchvision's "
        "cifar-10-batches-py under DIR), cdr (DIR/data/cifar10/*.npy; run CDR from DIR).")
    p.add_argument("dataset", choices=["cifar10"], help="dataset (cifar10)")
    p.add_argument("dest", type=Path, help="folder to write into")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="upstream (or layout) name")
    p.add_argument("--root", type=Path, required=True, metavar="DIR",
                   help="folder holding cifar-10-batches-py (or that folder itself)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..data.layouts import write_cifar10_layout
    from .console import console

    written = write_cifar10_layout(args.root, FORMATS[args.format], args.dest)
    console.print(f"wrote {len(written)} file(s) for {args.format} under {args.dest}", highlight=False)
    return 0
