"""``dmlp check-features``: the pre-flight feature check alone, before a long purification.

    dmlp check-features feats.npy --val-indices trusted.npy --val-labels trusted_labels.npy
    dmlp check-features feats.npy --val-features val_feats.npy --val-labels val_labels.npy

Exit code 0 when the features look usable, 1 when they look weak (so scripts can stop
before the run), 2 on bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

FLAG_NAMES = {"features": "FEATS", "features_key": "--features-key", "val_indices": "--val-indices",
              "val_labels": "--val-labels", "val_features": "--val-features", "num_classes": "--num-classes",
              "threads": "--threads"}


def register(subparsers: Any) -> None:
    from ..preflight import WEAK_SKILL_THRESHOLD

    p = subparsers.add_parser(
        "check-features", help="check that the features separate the classes, before purifying",
        description="Cross-fit a linear probe on the trusted rows only and report its held-out accuracy "
        "against chance and per class. Purification is bounded by how well the features separate the "
        f"classes: below a skill of {WEAK_SKILL_THRESHOLD} ((accuracy - chance) / (1 - chance)) the "
        "features are called weak. Exits 1 when they are.")
    p.add_argument("features", metavar="FEATS", help="(N, d) training features: .npy, .npz or .pt")
    p.add_argument("--features-key", metavar="KEY", help="array name inside a .npz/.pt features file")
    p.add_argument("--val-indices", metavar="FILE", help="(V,) indices of trusted training samples")
    p.add_argument("--val-features", metavar="FILE", help="(V, d) features of a separate trusted set")
    p.add_argument("--val-labels", required=True, metavar="FILE", help="(V,) clean labels of the trusted set")
    p.add_argument("--num-classes", type=int, metavar="C")
    p.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--threads", default="auto", metavar="N|auto",
                   help="CPU threads (default: auto, the cores other jobs leave free)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..argument_names import argument_names

    with argument_names(FLAG_NAMES):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ..io import load_array
    from ..preflight import check_features
    from .console import console

    load = {name: None if getattr(args, name) is None else load_array(getattr(args, name), what=name)
            for name in ("val_indices", "val_features", "val_labels")}
    features = load_array(args.features, key=args.features_key, what="features")
    check = check_features(features, num_classes=args.num_classes, folds=args.folds, seed=args.seed,
                           device=args.device, threads=args.threads, **load)
    table = Table(title="feature check", show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("trusted rows", f"{check.num_rows:,} in {check.num_classes} classes, {check.folds} folds")
    table.add_row("held-out accuracy", f"{check.accuracy:.1%}  (chance {check.chance:.1%})")
    table.add_row("skill", f"{check.skill:.2f}  (weak below {check.threshold:.2f})")
    table.add_row("weakest classes", ", ".join(f"{c}: {check.per_class_accuracy[c]:.0%}"
                                               for c in check.weakest_classes))
    table.add_row("time", f"{check.seconds:.2f} s")
    console.print(table)
    colour = "red" if check.weak else "green"
    console.print(f"[{colour}]{'warning' if check.weak else 'ok'}:[/] {escape(check.advice)}", highlight=False)
    return 1 if check.weak else 0
