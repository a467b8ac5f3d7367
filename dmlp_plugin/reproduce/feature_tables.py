"""``table8``: DMLP by feature source (the paper's Table 8), from features you bring.

The paper purifies CIFAR-10 labels from MoCo ResNet-18, SimCLR ResNet-18 and SimCLR
ResNet-50 features (R18 (M), R18 (S), R50 (S)). Each source is given as ``NAME=PATH``:

- a features file, ``.npz`` with ``train`` (50000, d) and ``test`` (10000, d) arrays in
  CIFAR-10 order (what ``dmlp features --split train,test`` writes);
- a checkpoint (``.pt``/``.pth``/``.ckpt``: ``dmlp pretrain``'s, or a SimCLR/MoCo one), whose
  features are extracted once with ``dmlp features`` into ``RESULTS_DIR/table8/features/``
  (a GPU makes this take seconds).

``kmeans`` (the k-means features of the run's inputs, see
:mod:`dmlp_plugin.reproduce.local_inputs`) is always a source, as the CPU reference row. The
names ``r18-moco``, ``r18-simclr`` and ``r50-simclr`` put the paper's figure beside their
rows; a paper row with no source given is reported and skipped. Every cell is a CPU-table
cell (:func:`dmlp_plugin.reproduce.runner.run_cell`): purified-label accuracy and the test
accuracy of a linear classifier on the purified labels, default and paper mode.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, MissingFileError
from ..io import array_checksum
from . import paper as P
from .cifar_inputs import Inputs, subset
from .runner import TableRun, code_version, run_cell
from .store import ResultStore
from .tables import FULL, MODES, RATES, SMOKE, CellSpec, Protocol, TableSpec

__all__ = ["PAPER_SOURCES", "TABLE8", "parse_sources", "load_source", "table8_cells", "run_table8",
           "missing_sources"]

#: Source names that carry the paper's figure, and its row.
PAPER_SOURCES = {"r18-moco": "R18 (M)", "r18-simclr": "R18 (S)", "r50-simclr": "R50 (S)"}
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar")

TABLE8 = TableSpec(
    "table8", "Table 8: feature source",
    "Purified-label accuracy and linear test accuracy of DMLP (default and paper mode) on each feature source "
    "given with --source NAME=FILE (features .npz or a checkpoint), and on CIFAR-10 k-means features.",
    "Paper: Table 8, DMLP-Naive on CIFAR-10 (a ResNet trained on the purified labels, Last epoch), by feature "
    "source: MoCo ResNet-18, SimCLR ResNet-18, SimCLR ResNet-50.",
    lambda seed: [], lambda s: s.get("mode") == "default", rows_name_features=True)


def parse_sources(items: Sequence[str]) -> dict[str, Path]:
    """``["r18-simclr=feats.npz", ...]`` -> ``{name: path}``; an :class:`InputError` for a
    malformed item or a repeated name."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--source expects NAME=FILE (features .npz or a checkpoint), got {item!r}")
        if name in out or name == "kmeans":
            raise InputError(f"--source {name!r} is given twice (kmeans is always the k-means features)")
        out[name] = Path(path).expanduser()
    return out


def missing_sources(sources: dict[str, Path]) -> list[str]:
    """The paper's rows no source was given for, as lines saying what would run them."""
    return [f"{row}: not run; give --source {name}=FEATURES.npz or --source {name}=CHECKPOINT.pt"
            for name, row in PAPER_SOURCES.items() if name not in sources]


def load_source(name: str, path: Path, cifar_root: Path, cache_dir: Path, device: str = "cpu") -> tuple[
        np.ndarray, np.ndarray, str]:
    """``(train, test, description)`` features of one source, float32."""
    if not path.exists():
        raise MissingFileError(f"--source {name}: {path} does not exist")
    if path.suffix in _CHECKPOINT_SUFFIXES:
        out = cache_dir / f"{name}.npz"
        if not out.is_file():
            _extract_checkpoint(name, path, cifar_root, out, device)
        path_used, what = out, f"checkpoint {path}"
    else:
        path_used, what = path, f"features {path}"
    with np.load(path_used, allow_pickle=False) as z:
        if "train" not in z.files or "test" not in z.files:
            raise InputError(f"--source {name}: {path_used} needs 'train' and 'test' arrays (has {', '.join(z.files)})")
        train, test = z["train"].astype(np.float32), z["test"].astype(np.float32)
    return train, test, what


def _extract_checkpoint(name: str, checkpoint: Path, cifar_root: Path, out: Path, device: str) -> None:
    """Features of the CIFAR-10 train and test images from ``checkpoint`` (a ``dmlp pretrain``
    checkpoint names its backbone), written to ``out`` as ``train`` and ``test``: what
    ``dmlp features --split train,test --checkpoint CHECKPOINT`` writes."""
    from ..data import load_dataset
    from ..errors import DmlpError
    from ..features import dataset_features, save_features
    from ..features.simclr import read_pretrain_config

    try:
        config = read_pretrain_config(checkpoint)
        if config is None:
            raise InputError(f"{checkpoint} does not record its backbone (not a dmlp pretrain checkpoint); extract "
                             "its features with `dmlp features --backbone NAME --split train,test` and pass the .npz")
        train, test = (load_dataset("cifar10", cifar_root, split) for split in ("train", "test"))
        features = dataset_features(train, str(config["backbone"]), checkpoint=checkpoint, device=device,
                                    progress=True, others=[test])
    except DmlpError as exc:
        raise InputError(f"--source {name}: cannot extract features from {checkpoint}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_features(out, {"train": features[0], "test": features[1]}, progress=True)


def table8_cells(sources: Sequence[str], seeds: Sequence[int] = (0,), rates: Sequence[float] = RATES) -> list[
        tuple[str, CellSpec]]:
    """``(source, cell)`` pairs in table order: source, rate, mode, seed."""
    cells = []
    for source in sources:
        row = PAPER_SOURCES.get(source)
        for rate in rates:
            for mode in ("default", "paper"):
                for seed in seeds:
                    figure = P.TABLE8_C10[row]["last"].get(rate) if row else None
                    cells.append((source, CellSpec(
                        "table8", f"{source}_sym{round(100 * rate)}_{mode}", f"sym {rate:.0%}",
                        f"{row or source} ({mode})", "dmlp", MODES[mode](), rate, P.PAPER_TRUSTED_CIFAR, seed,
                        paper=figure, paper_ref=f"Table 8, {row}, Last" if row else "",
                        extra={"mode": mode, "source": source})))
    return cells


def run_table8(store: ResultStore, sources: dict[str, Path], base_inputs: Callable[[], Inputs], *,
               cifar_root: Path, smoke: bool = False, seeds: Sequence[int] = (0,), rates: Sequence[float] = RATES,
               force: bool = False, device: str = "cpu", kmeans_tag: str | None = None,
               log: Callable[[str], None] | None = None) -> TableRun:
    """Run table 8 for ``kmeans`` and every source given; cells are stored like the CPU
    tables' (their protocol's ``features`` names the source and the checksum of its
    training features, so another file gives other cells).

    ``base_inputs()`` gives every row of the k-means features and the labels (called only
    when a cell must run); ``kmeans_tag`` names those features in the cells' protocol.
    """
    start = time.perf_counter()
    base = SMOKE if smoke else FULL
    if kmeans_tag is not None:
        base = dataclasses.replace(base, features=kmeans_tag)
    names = ["kmeans", *sources]
    records, computed, skipped = [], 0, 0
    code = None
    for name in names:
        cells = [cell for source, cell in table8_cells([name], seeds, rates) if source == name]
        if name == "kmeans":
            full = None
            tag = base.features
        else:
            train, test, what = load_source(name, sources[name], cifar_root, store.root / "table8" / "features",
                                            device)
            labelled = base_inputs()
            if len(train) != len(labelled.clean) or len(test) != len(labelled.test_labels):
                raise InputError(f"--source {name}: {len(train)} train / {len(test)} test rows, expected "
                                 f"{len(labelled.clean)} / {len(labelled.test_labels)} (CIFAR-10 order)")
            full = Inputs(train, test, labelled.clean, labelled.test_labels)
            tag = f"{name}:{array_checksum(train)[:12]}"
        protocol = dataclasses.replace(base, features=tag)
        todo = [c for c in cells if force or store.load("table8", c.cell_id(protocol)) is None]
        for cell in cells:
            if cell not in todo:
                records.append(store.load("table8", cell.cell_id(protocol)))
                skipped += 1
        if not todo:
            continue
        full = full if full is not None else base_inputs()
        data = subset(full, protocol.train_rows, test=protocol.test_rows)
        if protocol.feature_dims is not None and protocol.feature_dims < data.train.shape[1]:
            k = protocol.feature_dims
            data = Inputs(np.ascontiguousarray(data.train[:, :k]), np.ascontiguousarray(data.test[:, :k]),
                          data.clean, data.test_labels)
        code = code or code_version()
        for cell in todo:
            record = run_cell(cell, protocol, data, device=device, code=code)
            store.save(record)
            records.append(record)
            computed += 1
            if log is not None:
                m = record["metrics"]
                log(f"table8 {cell.panel:<8} {cell.series:<24} seed {cell.seed}: label acc "
                    f"{100 * m['label_accuracy']:6.2f}, linear test {100 * m['linear_test_accuracy']:5.2f}")
    order = {(c.key, c.seed): i for i, (_, c) in enumerate(table8_cells(names, seeds, rates))}
    records.sort(key=lambda r: order.get((r["key"].removeprefix("smoke_"), r["seed"]), 0))
    protocol_any: Protocol = base
    return TableRun(TABLE8, protocol_any, records, computed, skipped, time.perf_counter() - start)
