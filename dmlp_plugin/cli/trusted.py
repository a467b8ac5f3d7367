"""``dmlp trusted``: draw a trusted set from clean labels, for ``dmlp purify --val-indices``.

    dmlp trusted --dataset cifar10 --root ~/data --per-class 100 -o trusted.npy
    dmlp trusted --labels clean.npy --size 1000 --seed 1 -o trusted.npy
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trusted", help="draw a trusted set (indices and their clean labels) for dmlp purify",
        description="Draw a seeded trusted set from clean training labels: N per class (--per-class) or N "
        "in all (--size). Writes the indices (-o) and their clean labels (--labels-output, default: "
        "OUT with _labels before the suffix), ready for dmlp purify --val-indices/--val-labels.")
    src = p.add_argument_group("clean labels: --labels FILE, or --dataset NAME --root DIR")
    src.add_argument("--labels", type=Path, metavar="FILE", help="clean labels (.npy, .json, .txt, .pt)")
    src.add_argument("--dataset", metavar="NAME", help="cifar10, cifar100, clothing1m or imagefolder")
    src.add_argument("--root", type=Path, metavar="DIR", help="the dataset's folder")
    src.add_argument("--split", default="train", help="dataset split (default: train)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--per-class", type=int, metavar="N", help="N samples of every class")
    size.add_argument("--size", type=int, metavar="N", help="N samples in all, drawn uniformly")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="indices (.npy)")
    p.add_argument("--labels-output", type=Path, metavar="FILE", help="their clean labels (.npy)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..argument_names import argument_names

    with argument_names({"clean_labels": "--labels", "per_class": "--per-class", "size": "--size"}):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..io import check_output_path, export_labels
    from ..trusted import draw_trusted_set
    from .console import console
    from .noise import _clean_labels

    labels_out = args.labels_output or args.output.with_name(f"{args.output.stem}_labels{args.output.suffix}")
    for flag, path in (("--output", args.output), ("--labels-output", labels_out)):
        check_output_path(path, flag, suffixes=(".npy",))
    labels, _ = _clean_labels(args)
    if labels is None:
        raise InputError("give clean labels with --labels FILE or --dataset NAME --root DIR")
    indices = draw_trusted_set(labels, per_class=args.per_class, size=args.size, seed=args.seed)
    export_labels(indices, args.output, "npy")
    export_labels(labels[indices], labels_out, "npy")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("trusted set", f"{len(indices):,} of {len(labels):,} samples, seed {args.seed}")
    table.add_row("indices", str(args.output))
    table.add_row("clean labels", str(labels_out))
    table.add_row("next", f"dmlp purify ... --val-indices {args.output} --val-labels {labels_out}")
    console.print(table)
    return 0
