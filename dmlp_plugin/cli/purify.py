"""``dmlp purify``: features + noisy labels + trusted set → purified-label file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..accuracy_estimate import DEFAULT_FOLDS
from ..errors import ConfigError, InputError

__all__ = ["register", "add_config_options", "config_from_args", "summary_table", "FLAG_NAMES"]

DESCRIPTION = """\
Purify noisy labels with DMLP. The trusted set is either indices into the training set
with their clean labels (--val-indices/--val-labels, the CIFAR protocol) or a separate set
(--val-features/--val-labels, the Clothing1M protocol).

What --mode default runs (docs/engine.md has the map): candidates, each a classifier of
the true label fitted on the given labels and the trusted rows: five least-squares rounds
(DMLP's EAC with a closed-form head), a forward-corrected logistic head at three weight
decays, and, with --set mlp_candidate=true, a forward-corrected network. Each is turned
into a posterior through the noise transition counted on the trusted set (shrunk toward
a pooled keep rate, refined by EM over the training rows, weighted and offset by fits on
the trusted rows); the candidate with the lowest cross-fitted trusted log-loss gives the
labels. --mode paper is the
paper's method, IPC + EAC with the official hyperparameters, for reproduction. Evidence: docs/engine.md."""

#: How `dmlp purify`'s messages call the arguments of purify_dataset: by the flags.
FLAG_NAMES = {
    "features": "--features", "features_key": "--features-key", "labels": "--labels",
    "labels_key": "--labels-key", "val_indices": "--val-indices", "val_features": "--val-features",
    "val_labels": "--val-labels", "clean_labels": "--clean-labels", "num_classes": "--num-classes",
    "output": "--output", "export_path": "--export-path", "plot": "--plot", "threads": "--threads",
    "max_memory": "--max-memory",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "purify", help="purify noisy labels from features and a trusted set",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=DESCRIPTION)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", metavar="FILE",
                        help="(N, d) training features: .npy, .npz or .pt (text files are refused: save them as .npy)")
    source.add_argument("--dataset", metavar="NAME",
                        help="a dataset on disk instead (cifar10, cifar100, clothing1m, imagefolder): "
                        "its images are turned into features with --backbone (cached)")
    p.add_argument("--root", metavar="DIR", help="dataset folder, with --dataset")
    p.add_argument("--split", default="train", help="dataset split, with --dataset (default: train)")
    p.add_argument("--backbone", metavar="NAME",
                   help="with --dataset: torchvision/timm name (e.g. resnet18-cifar) or 'kmeans'")
    p.add_argument("--checkpoint", metavar="FILE", help="with --dataset: local SSL weights for --backbone")
    p.add_argument("--features-key", metavar="KEY", help="array name inside a .npz/.pt features file")
    p.add_argument("--labels", metavar="FILE",
                   help="(N,) noisy labels: .npy, .json (DivideMix noise file), .txt, .pt "
                   "(with --dataset, defaults to the dataset's own labels)")
    p.add_argument("--labels-key", metavar="KEY", help="entry name inside a .npz/.pt labels file")
    p.add_argument("--val-indices", metavar="FILE", help="(V,) indices of trusted training samples")
    p.add_argument("--val-features", metavar="FILE", help="(V, d) features of a separate trusted set")
    p.add_argument("--val-labels", required=True, metavar="FILE", help="(V,) clean labels of the trusted set")
    p.add_argument("--clean-labels", metavar="FILE",
                   help="(N,) true labels, only to report label accuracy before/after")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="result file (.npz)")
    p.add_argument("--export", choices=("dividemix", "npy", "soft-npy", "datalab"),
                   help="also write the labels in an upstream format beside the result (datalab: a CSV with "
                   "cleanlab Datalab's label-issue columns, for cleanlab and FiftyOne reviewers)")
    p.add_argument("--export-path", metavar="FILE",
                   help="where --export writes (default: OUT with .json or .labels.npy)")
    p.add_argument("--plot", metavar="OUT.png",
                   help="also plot the run per epoch: label accuracy with --clean-labels, else the fraction "
                   "of labels changed (needs matplotlib: pip install 'dmlp-plugin[plot]')")
    p.add_argument("--num-classes", type=int, metavar="C")
    p.add_argument("--estimate-accuracy", action="store_true",
                   help="also estimate the purified labels' accuracy on the non-trusted rows without clean "
                   "labels, with an interval: each of K folds of the trusted set is purified as ordinary "
                   "rows with its given labels and scored against its clean labels. Needs --val-indices. "
                   "Costs K extra purifications (about 6x the time of a plain run at K=5), so it is off by "
                   "default; the labels written are the same with or without it")
    p.add_argument("--estimate-folds", type=int, default=DEFAULT_FOLDS, metavar="K",
                   help=f"folds of --estimate-accuracy (default: {DEFAULT_FOLDS}); fewer lean the estimate low "
                   "where the method depends on the trusted set's size: 10 is better for --mode paper "
                   "at high noise")
    add_config_options(p)
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("default", "paper"), default="default",
                   help="default: the benchmark's best settings; paper: the paper's method "
                   "with the official hyperparameters")
    p.add_argument("--epochs", type=int, help="--mode paper: the loop's epochs (default 100)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a field of the mode's config (repeatable), e.g. --set rounds=3 or "
                   "--set mlp_candidate=true; with --mode paper, e.g. --set eac_eta=0.5")
    p.add_argument("--threads", type=_threads, default="auto", metavar="N|auto",
                   help="CPU threads (default: auto, which leaves the cores other jobs keep busy to them; "
                   "$DMLP_THREADS or OMP_NUM_THREADS, when set, win over auto)")
    p.add_argument("--max-memory", metavar="SIZE",
                   help="memory budget, e.g. 8GB: when the training features do not fit it whole (in float32), "
                   "they are read in chunks of rows from where they are (a .npy stays memory-mapped on disk), "
                   "and paper mode's IPC works a group of batches at a time. Default: no budget, all in memory")


def _threads(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a count >= 1 or auto, got {text!r}")
    return int(text)


def config_from_args(args: argparse.Namespace):
    from ..config import PurifyConfig

    config = PurifyConfig.paper() if args.mode == "paper" else PurifyConfig()
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        if args.mode != "paper":
            raise ConfigError("--epochs is a setting of --mode paper; the default pipeline has no epochs "
                              "(its least-squares rounds: --set rounds=K)")
        overrides["epochs"] = args.epochs
    if getattr(args, "max_memory", None) is not None:
        overrides["max_memory"] = args.max_memory
    for item in args.set:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[name.strip()] = _parse_value(getattr(config, name.strip(), None), raw.strip(), name)
    return config.replace(**overrides) if overrides else config  # unknown fields: ConfigError with a hint


def _parse_value(current: Any, raw: str, name: str) -> Any:
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            # a list where one value is usual (logistic_weight_decay's regularisation path)
            return tuple(float(v) for v in raw.split(",")) if "," in raw else float(raw)
        if isinstance(current, tuple):
            return tuple(float(v) for v in raw.split(","))
    except ValueError as exc:
        raise ConfigError(f"--set {name}: cannot read {raw!r} as {type(current).__name__}") from exc
    return raw


def summary_table(result, *, title: str = "DMLP purification", output: Path | None = None,
                  extra: dict[str, str] | None = None):
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # paths must stay whole to be copied
    meta = result.metadata
    table.add_row("samples", f"{len(result):,}  ({meta.get('num_trusted', 0):,} trusted)")
    table.add_row("classes", str(result.num_classes))
    check = meta.get("feature_check")
    if check:
        colour = "red" if check.get("weak") else "green"
        table.add_row("feature check", f"[{colour}]linear probe {check['accuracy']:.1%} held out on the trusted rows "
                      f"(skill {check['skill']:.2f}{', weak' if check.get('weak') else ''})[/]")
    table.add_row("labels changed", f"{result.num_changed:,}  ({result.num_changed / len(result):.1%})")
    if "label_accuracy_before" in meta:
        before, after = meta["label_accuracy_before"], meta["label_accuracy_after"]
        colour = "green" if after >= before else "red"
        table.add_row("label accuracy (non-trusted rows)", f"{before:.2%} → [{colour}]{after:.2%}[/] ({(after - before) * 100:+.2f} pts)")
    estimate = result.accuracy_estimate
    if estimate is not None:
        table.add_row("estimated accuracy", estimate.describe())
        gain = (estimate.accuracy - estimate.given_accuracy) * 100
        colour = "red" if estimate.worse_than_given else "green"
        table.add_row("given labels, same rows", f"{estimate.given_accuracy:.2%}  (purified: [{colour}]{gain:+.2f} pts[/]; "
                      f"{estimate.fixed} fixed, {estimate.broken} broken)")
        if estimate.worse_than_given:
            table.add_row("[red]warning[/]", f"[red]the purified labels look worse than the given ones (sign test "
                          f"p = {estimate.worse_p_value:.2g}); consider another config or keeping the given labels[/]")
    if meta.get("selected"):
        nll = meta.get("candidate_nll", {}).get(meta["selected"])
        weight = meta.get("transition_weight")
        table.add_row("labels from", meta["selected"] + (f"  (trusted log-loss {nll:.3f})" if nll is not None else "")
                      + (f"; transition weight {weight:.2f}" if weight is not None else ""))
    memory = meta.get("memory") or {}
    how = []
    if memory.get("processes", 1) > 1:
        how.append(f"shared between {memory['processes']} processes (torchrun)")
    if memory.get("chunk_rows"):
        how.append(f"in chunks of {memory['chunk_rows']:,} rows (max_memory {result.config.max_memory}; "
                   f"estimated {memory['estimated_bytes'] / 1e9:.2f} GB per process)")
    if how:
        table.add_row("features read", ", ".join(how))
    table.add_row("time", f"{result.timings.get('total', 0):.2f} s on {meta.get('device', '?')}")
    for key, value in (extra or {}).items():
        table.add_row(key, value)
    if output is not None:
        table.add_row("written", str(output))
    return table


def _check_features_file(path: Path) -> None:
    """Only the formats --help names: a text or JSON file of floats would be parsed slowly and
    silently, so it is refused with what to do instead."""
    if path.suffix.lower() not in (".npy", ".npz", ".pt", ".pth") and not path.is_dir():
        raise InputError(f"--features {path.name}: features must be .npy, .npz or .pt (or a folder of shards "
                         "written under torchrun); convert a text file once with "
                         "numpy.save('features.npy', numpy.loadtxt('features.txt', dtype='float32'))")


def _default_export_path(output: Path, fmt: str) -> Path:
    stem = output.with_suffix("")
    suffix = {"dividemix": ".json", "datalab": ".datalab.csv"}.get(fmt, ".labels.npy")
    return stem.with_name(stem.name + suffix)


def run(args: argparse.Namespace) -> int:
    from ..argument_names import argument_names

    with argument_names(FLAG_NAMES):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from .. import purify_dataset
    from ..io import check_distinct_paths, check_output_path, check_room_for_result, load_array
    from ..validation import exactly_one
    from .console import console

    exactly_one(val_indices=args.val_indices, val_features=args.val_features)
    if args.features is not None:
        _check_features_file(Path(args.features))
    if args.estimate_accuracy and args.val_indices is None:
        raise InputError("--estimate-accuracy needs --val-indices (trusted rows inside the training set, "
                         "with given labels to purify); a separate trusted set (--val-features) has none")
    # Every output is checked before any work: a bad path must not cost a whole run.
    output = check_output_path(args.output, "output", suffixes=(".npz",))
    export_path = None
    if args.export:
        export_path = check_output_path(args.export_path or _default_export_path(output, args.export),
                                        "export_path")
    elif args.export_path:
        raise InputError("--export-path needs --export (which format to write)")
    if args.plot:
        from ..report.plots import require_matplotlib

        check_output_path(args.plot, "plot", suffixes=(".png",))
        require_matplotlib()
    # No output may be another output or an input, through links and relative paths alike.
    check_distinct_paths({"output": output, "export_path": export_path, "plot": args.plot},
                         {name: getattr(args, name) for name in ("features", "labels", "val_indices", "val_features",
                                                                 "val_labels", "clean_labels", "checkpoint")})
    config = config_from_args(args)
    kwargs: dict[str, Any] = {}
    if args.dataset:
        from ..data import load_dataset

        if not args.root or not args.backbone:
            raise InputError("--dataset needs --root (its folder) and --backbone (how to make features)")
        features = load_dataset(args.dataset, args.root, split=args.split)
        kwargs.update(backbone=args.backbone, checkpoint=args.checkpoint)
    else:
        if args.labels is None:
            raise InputError("--labels is required with --features")
        features = load_array(args.features, key=args.features_key, what="features")
    labels = None if args.labels is None else load_array(args.labels, key=args.labels_key, what="labels")
    check_room_for_result(output, export_path, args.export, labels=labels, rows=features, num_classes=args.num_classes)
    for name in ("val_indices", "val_features", "val_labels", "clean_labels"):
        if getattr(args, name) is not None:
            kwargs[name] = load_array(getattr(args, name), what=name)
    result = purify_dataset(features, labels, num_classes=args.num_classes, config=config,
                            device=args.device, seed=args.seed, progress=not args.no_progress,
                            estimate_accuracy=args.estimate_accuracy, estimate_folds=args.estimate_folds,
                            threads=args.threads, **kwargs)
    from .. import distributed

    if distributed.rank() != 0:  # under torchrun every process holds the same result; one writes it
        return 0
    result.save(output)
    extra = {}
    if export_path is not None:
        result.export(export_path, args.export)
        extra[f"export ({args.export})"] = str(export_path)
    if args.plot:
        from ..report import plot_history

        extra["plot"] = str(plot_history(result, args.plot).path)
    console.print(summary_table(result, output=output, extra=extra))
    return 0
