"""``dmlp trusted``: make the trusted set ``dmlp purify --val-indices/--val-labels`` reads.

From clean labels you have::

    dmlp trusted --dataset cifar10 --root ~/data --per-class 100 -o trusted.npy
    dmlp trusted --labels clean.npy --size 1000 --seed 1 -o trusted.npy

From nothing: pick rows to verify, label them on the page, read the labels back::

    dmlp trusted --to-label 500 --images ~/data/photos -o to_label.csv     # + to_label.html
    dmlp trusted --from-csv labelled.csv -o trusted.npy                    # + trusted_labels.npy
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .clean_labels import add_clean_label_arguments

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trusted", help="make a trusted set for dmlp purify: draw it from clean labels, or label one yourself",
        description="Make a trusted set (indices and their clean labels) for dmlp purify --val-indices/"
        "--val-labels. With clean labels: draw N per class (--per-class) or N in all (--size). Without: "
        "--to-label K picks K rows to verify, as many of every given label, at random within it, and writes "
        "a CSV and a page on which to label them; --from-csv reads the labelled CSV back.")
    src = p.add_argument_group("labels and images")
    add_clean_label_arguments(
        src, labels_help="clean labels (.npy, .json, .txt, .pt); with --to-label, the given labels (default: the "
        "dataset's own)", dataset_help="cifar10, cifar100, clothing1m, imagefolder (or cdr-npy with --images)")
    src.add_argument("--images", type=Path, metavar="ROOT",
                     help="with --to-label: the images (ImageFolder, CIFAR folders, CDR's layout); the form is "
                     "told from the folder unless --dataset names it")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--per-class", type=int, metavar="N", help="N samples of every class")
    mode.add_argument("--size", type=int, metavar="N", help="N samples in all, drawn uniformly")
    mode.add_argument("--to-label", type=int, metavar="K",
                      help="pick K rows to verify, balanced over the given labels; writes -o (.csv) and a page")
    mode.add_argument("--from-csv", type=Path, metavar="FILE", help="read a labelled CSV back into a trusted set")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                   help="indices (.npy); with --to-label, the CSV to fill in (.csv)")
    p.add_argument("--labels-output", type=Path, metavar="FILE",
                   help="their clean labels (.npy; default: OUT with _labels before the suffix)")
    p.add_argument("--page", type=Path, metavar="FILE.html",
                   help="with --to-label: the labelling page (default: OUT with .html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..argument_names import argument_names

    with argument_names({"clean_labels": "--labels", "given_labels": "--labels", "labels": "--labels",
                         "per_class": "--per-class", "size": "--size", "count": "--to-label", "output": "--output",
                         "labels_output": "--labels-output", "page": "--page", "from_csv": "--from-csv"}):
        if args.to_label is not None:
            return _to_label(args)
        if args.from_csv is not None:
            return _from_csv(args)
        return _draw(args)


def _index_outputs(args: argparse.Namespace, inputs: dict[str, Path | None]) -> tuple[Path, Path]:
    """The indices' and the labels' paths, checked before any work: writable, ``.npy``, and
    neither the other nor one of ``inputs`` (through links, ``..`` and hard links)."""
    from ..io import check_distinct_paths, check_output_path

    labels_out = args.labels_output or args.output.with_name(f"{args.output.stem}_labels{args.output.suffix}")
    for name, path in (("output", args.output), ("labels_output", labels_out)):
        check_output_path(path, name, suffixes=(".npy",))
    check_distinct_paths({"output": args.output, "labels_output": labels_out}, inputs)
    return args.output, labels_out


def _write_trusted(indices: np.ndarray, labels: np.ndarray, out: Path, labels_out: Path, what: str) -> None:
    from rich.table import Table

    from ..io import check_free_space, export_labels
    from ..sizes import export_file_bytes
    from .console import console

    size = export_file_bytes(len(indices), 0, "npy")
    check_free_space({out: size, labels_out: size}, {out: "output", labels_out: "labels_output"})
    export_labels(indices, out, "npy")
    export_labels(labels, labels_out, "npy")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("trusted set", what)
    table.add_row("indices", str(out))
    table.add_row("clean labels", str(labels_out))
    table.add_row("next", f"dmlp purify ... --val-indices {out} --val-labels {labels_out}")
    console.print(table)


def _draw(args: argparse.Namespace) -> int:
    from ..trusted import draw_trusted_set
    from .clean_labels import read_clean_labels

    if args.images is not None:
        raise InputError("--images is for --to-label; give clean labels with --labels or --dataset/--root")
    out, labels_out = _index_outputs(args, {"labels": args.labels})
    labels, _ = read_clean_labels(args)
    if labels is None:
        raise InputError("give clean labels with --labels FILE or --dataset NAME --root DIR")
    indices = draw_trusted_set(labels, per_class=args.per_class, size=args.size, seed=args.seed)
    _write_trusted(indices, labels[indices], out, labels_out,
                   f"{len(indices):,} of {len(labels):,} samples, seed {args.seed}")
    return 0


def _to_label(args: argparse.Namespace) -> int:
    from ..io import check_distinct_paths, check_free_space, check_output_path, load_array
    from ..review import build_label_page, image_location, label_page_bytes, open_images
    from ..trusted import draw_to_label
    from ..trusted_csv import to_label_csv, write_to_label_csv
    from ..validation import as_labels
    from .console import console

    output = check_output_path(args.output, "output", suffixes=(".csv",))
    page_path = check_output_path(args.page or output.with_suffix(".html"), "page", suffixes=(".html", ".htm"))
    check_distinct_paths({"output": output, "page": page_path}, {"labels": args.labels})
    root = args.images or args.root
    if root is None:
        raise InputError("--to-label needs the images: --images ROOT (the dataset's folder)")
    images = open_images(root, args.dataset, args.split)
    given = images.targets if args.labels is None else load_array(args.labels, what="given_labels",
                                                                  rows=len(images))
    given = as_labels(given, "given_labels", num_classes=len(images.classes), length=len(images))
    rows = draw_to_label(given, args.to_label, seed=args.seed)
    names = [str(c) for c in images.classes]
    locations = [image_location(images, i) for i in rows]
    csv_name = "labelled.csv" if output.stem == "to_label" else f"{output.stem}_labelled.csv"
    # Before the images are read: the CSV's exact size, and a bound on the page's.
    check_free_space({output: len(to_label_csv(rows, given, names, locations).encode()),
                      page_path: label_page_bytes(images, rows, given, names, csv_name=csv_name)},
                     {output: "output", page_path: "page"})
    write_to_label_csv(output, rows, given, names, locations)
    build_label_page(images, rows, given, names, page_path, csv_name=csv_name, seed=args.seed)
    counts = np.bincount(given[rows], minlength=len(names))
    console.print(f"picked {len(rows):,} of {len(given):,} rows to verify ({counts.min()}-{counts.max()} per given "
                  f"class, random within it)\nCSV:  {output}\npage: {page_path}\nnext: label them on the page "
                  f"(or fill true_label in the CSV), then: dmlp trusted --from-csv {csv_name} -o trusted.npy",
                  highlight=False, markup=False)
    return 0


def _from_csv(args: argparse.Namespace) -> int:
    from ..trusted_csv import read_labelled_csv
    from ..validation import check_classes_present

    out, labels_out = _index_outputs(args, {"from_csv": args.from_csv})
    rows = read_labelled_csv(args.from_csv)
    if rows.class_names:  # dmlp purify needs a verified row of every class: say so now, not after a run
        check_classes_present(rows.labels, len(rows.class_names))
    what = f"{len(rows.indices):,} verified rows from {args.from_csv}"
    if rows.given is not None:  # the verified rows are a random sample: their given labels' accuracy estimates all
        right = int((rows.given == rows.labels).sum())
        what += f"; their given label was right on {right:,} ({right / len(rows.labels):.1%})"
    _write_trusted(rows.indices, rows.labels, out, labels_out, what)
    return 0
