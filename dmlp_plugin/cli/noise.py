"""``dmlp noise``: write noisy labels (synthetic or CIFAR-N) for a benchmark run.

    dmlp noise --dataset cifar10 --root ~/data --kind symmetric --rate 0.5 -o noise.json
    dmlp noise --labels clean.npy --kind pairflip --rate 0.45 --seed 1 -o noisy.npy
    dmlp noise --cifar-n CIFAR-10_human.pt --key worse_label --dataset cifar10 --root ~/data -o worse.npy
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from .clean_labels import add_clean_label_arguments, read_clean_labels

if TYPE_CHECKING:
    from ..data import ImageDataset
    from ..noise import NoiseResult

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..io import EXPORT_FORMATS
    from ..noise import CONVENTIONS, KINDS

    p = subparsers.add_parser(
        "noise", help="make noisy labels (synthetic or CIFAR-N) and write them to a file",
        description="Corrupt clean labels with seeded synthetic noise, or take a CIFAR-N human "
        "label set, and write the noisy labels. Prints the realised noise rate next to the "
        "nominal one: they differ (symmetric 50% in the DivideMix convention leaves about 45% "
        "of labels wrong).")
    add_clean_label_arguments(
        p.add_argument_group("clean labels: --labels FILE, or --dataset NAME --root DIR"),
        labels_help="clean labels (.npy, .npz, .json, .txt, .csv or .pt)",
        dataset_help="cifar10, cifar100, clothing1m or imagefolder; with --root its labels are read. Also chooses "
        "the asymmetric mapping (cifar10, cifar100)")
    syn = p.add_argument_group("synthetic noise")
    syn.add_argument("--kind", choices=KINDS, default="symmetric", help="noise model (default: symmetric)")
    syn.add_argument("--rate", type=float, help="nominal noise rate in [0, 1]")
    syn.add_argument("--convention", choices=CONVENTIONS, default="dividemix",
                     help="symmetric/asymmetric: dividemix (a random rate*N subset is relabelled; "
                     "a symmetric draw may keep the true class) or exclusive (each label flips with "
                     "probability rate, always to another class; Co-teaching, CDR). Default: dividemix")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    syn.add_argument("--num-classes", type=int, metavar="C", help="number of classes (default: inferred)")
    syn.add_argument("--features", type=Path, metavar="FILE",
                     help="(N, d) features for --kind instance (default with --root: the raw pixels, "
                     "as the reference implementation)")
    cn = p.add_argument_group("human noise (CIFAR-10N / CIFAR-100N)")
    cn.add_argument("--cifar-n", type=Path, metavar="FILE", help="CIFAR-10_human.pt or CIFAR-100_human.pt; "
                    "with clean labels given, checks they match the file's")
    cn.add_argument("--key", default="worse_label",
                    help="label set: aggre_label, worse_label, random_label1..3, noisy_label (default: worse_label)")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="where to write the noisy labels")
    out.add_argument("--format", choices=[f for f in EXPORT_FORMATS if f != "soft-npy"],
                     help="dividemix (JSON list) or npy; default: dividemix for .json, else npy")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import check_distinct_paths, check_output_path, export_labels
    from ..noise import load_cifar_n, make_noisy_labels
    from ..sizes import export_file_bytes

    # Before any work: a folder, an unwritable place or an input given as the output.
    check_output_path(args.output, "--output")
    check_distinct_paths({"--output": args.output},
                         {"--labels": args.labels, "--cifar-n": args.cifar_n, "--features": args.features})
    labels, dataset = read_clean_labels(args)
    if args.cifar_n is not None:
        result = load_cifar_n(args.cifar_n, key=args.key, clean_labels=labels)
    else:
        if labels is None:
            raise InputError("give clean labels with --labels FILE or --dataset NAME --root DIR "
                             "(or a CIFAR-N file with --cifar-n FILE)")
        if args.rate is None:
            raise InputError("--rate is required for synthetic noise")
        features = _features(args, dataset, len(labels)) if args.kind == "instance" else None
        result = make_noisy_labels(labels, kind=args.kind, rate=args.rate, num_classes=args.num_classes,
                                   dataset=args.dataset, convention=args.convention, seed=args.seed,
                                   features=features)
    fmt = args.format or ("dividemix" if args.output.suffix.lower() == ".json" else "npy")
    size = export_file_bytes(len(result.noisy_labels), result.num_classes, fmt)
    check_output_path(args.output, "--output", size=size)
    path = export_labels(result.noisy_labels, args.output, fmt)
    _print_summary(result, path, fmt)
    return 0


def _features(args: argparse.Namespace, dataset: ImageDataset | None, n: int) -> np.ndarray:
    from ..io import load_array

    if args.features is not None:
        return load_array(args.features, what="feature")
    if dataset is not None and dataset.images is not None:
        return dataset.images.reshape(n, -1)
    raise InputError("--kind instance needs --features FILE, or --dataset/--root of an in-memory "
                     "dataset (CIFAR) whose pixels serve as features")


def _print_summary(result: NoiseResult, path: Path, fmt: str) -> None:
    from rich.table import Table

    from .console import console

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # wrap long paths rather than cut them
    kind = result.kind + (f" ({result.convention} convention)" if result.convention else "")
    nominal = "unknown" if result.nominal_rate is None else f"{result.nominal_rate:.2%}"
    table.add_row("kind", kind)
    table.add_row("nominal rate", nominal)
    table.add_row("realised rate", f"{result.realised_rate:.2%} of labels wrong")
    table.add_row("samples", f"{len(result.noisy_labels):,} ({result.num_classes} classes)")
    if result.seed is not None:
        table.add_row("seed", str(result.seed))
    table.add_row("written", f"{path} ({fmt})")
    console.print(table)
