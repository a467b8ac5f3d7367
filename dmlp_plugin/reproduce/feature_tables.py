"""``table8``: DMLP by feature source (the paper's Table 8), from features you bring.

The paper purifies CIFAR-10 labels from MoCo ResNet-18, SimCLR ResNet-18 and SimCLR
ResNet-50 features (R18 (M), R18 (S), R50 (S)). Each source is given as ``NAME=PATH``:

- a features file, ``.npz`` with ``train`` (50000, d) and ``test`` (10000, d) arrays in
  CIFAR-10 order (what ``dmlp features --split train,test`` writes);
- a checkpoint (``.pt``/``.pth``/``.ckpt``: ``dmlp pretrain``'s, or a SimCLR/MoCo one), whose
  features are extracted once with ``dmlp features`` into ``RESULTS_DIR/table8/features/``
  (a GPU makes this take seconds).

``kmeans`` (the shared k-means features) is always a source, as the CPU reference row. The
names ``r18-moco``, ``r18-simclr`` and ``r50-simclr`` put the paper's figure beside their
rows; a paper row with no source given is reported and skipped. Every cell is a CPU-table
cell (:func:`dmlp_plugin.reproduce.runner.run_cell`): purified-label accuracy and the test
accuracy of a linear classifier on the purified labels, default and paper mode.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

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
    "given with --source NAME=FILE (features .npz or a checkpoint), and on the shared k-means features.",
    "Paper: Table 8, DMLP-Naive on CIFAR-10 (a ResNet trained on the purified labels, Last epoch), by feature "
    "source: MoCo ResNet-18, SimCLR ResNet-18, SimCLR ResNet-50.",
    lambda seed: [], lambda s: s.get("mode") == "default")


def parse_sources(items: Sequence[str]) -> dict[str, Path]:
    """``["r18-simclr=feats.npz", ...]`` -> ``{name: path}``; an :class:`InputError` for a
    malformed item or a repeated name."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--source expects NAME=FILE (features .npz or a checkpoint), got {item!r}")
        if name in out or name == "kmeans":
            raise InputError(f"--source {name!r} is given twice (kmeans is always the shared k-means features)")
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
            cache_dir.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([sys.executable, "-m", "dmlp_plugin", "features", "--dataset", "cifar10",
                                   "--root", str(cifar_root), "--split", "train,test", "--checkpoint", str(path),
                                   "--device", device, "-o", str(out)], capture_output=True, text=True)
            if done.returncode != 0:
                lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
                raise InputError(f"--source {name}: dmlp features failed on {path}: {lines[-1]}")
        path_used, what = out, f"checkpoint {path}"
    else:
        path_used, what = path, f"features {path}"
    with np.load(path_used) as z:
        if "train" not in z.files or "test" not in z.files:
            raise InputError(f"--source {name}: {path_used} needs 'train' and 'test' arrays (has {', '.join(z.files)})")
        train, test = z["train"].astype(np.float32), z["test"].astype(np.float32)
    return train, test, what


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


def run_table8(store: ResultStore, sources: dict[str, Path], shared_inputs: Callable[[], Inputs], *,
               cifar_root: Path, smoke: bool = False, seeds: Sequence[int] = (0,), rates: Sequence[float] = RATES,
               force: bool = False, device: str = "cpu",
               log: Callable[[str], None] | None = None) -> TableRun:
    """Run table 8 for ``kmeans`` and every source given; cells are stored like the CPU
    tables' (their protocol's ``features`` names the source and the checksum of its
    training features, so another file gives other cells)."""
    start = time.perf_counter()
    base = SMOKE if smoke else FULL
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
            shared = shared_inputs()
            if len(train) != len(shared.clean) or len(test) != len(shared.test_labels):
                raise InputError(f"--source {name}: {len(train)} train / {len(test)} test rows, expected "
                                 f"{len(shared.clean)} / {len(shared.test_labels)} (CIFAR-10 order)")
            full = Inputs(train, test, shared.clean, shared.test_labels)
            tag = f"{name}:{array_checksum(train)[:12]}"
        protocol = dataclasses.replace(base, features=tag)
        todo = [c for c in cells if force or store.load("table8", c.cell_id(protocol)) is None]
        for cell in cells:
            if cell not in todo:
                records.append(store.load("table8", cell.cell_id(protocol)))
                skipped += 1
        if not todo:
            continue
        full = full if full is not None else shared_inputs()
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


def describe_sources(sources: dict[str, Path]) -> list[dict[str, Any]]:
    return [{"name": n, "path": str(p), "paper_row": PAPER_SOURCES.get(n)} for n, p in sources.items()]
