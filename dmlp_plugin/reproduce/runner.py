"""Running a table's cells into the results store, skipping the ones already there."""

from __future__ import annotations

import datetime
import math
import platform
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .. import __version__
from ..errors import LabelError
from ..progress import progress_bar
from .cifar_inputs import NUM_CLASSES, Inputs, draw_trusted, git_revision, noisy_labels, probe_accuracy, subset
from .store import ResultStore, record_header
from .tables import FULL, SMOKE, CellSpec, Protocol, TableSpec, get_table

__all__ = ["TableRun", "run_table", "run_cell", "code_version"]

InputsSource = Inputs | Callable[[], Inputs]


@dataclass
class TableRun:
    """What :func:`run_table` did: the table's records in cell order, and how many cells
    were computed now or found in the store."""

    table: TableSpec
    protocol: Protocol
    records: list[dict[str, Any]]
    computed: int
    skipped: int
    seconds: float


def code_version() -> dict[str, str]:
    """The versions a cell was computed with: dmlp-plugin, its git revision, torch, Python."""
    import torch

    return {"dmlp_plugin": __version__, "git": git_revision(), "torch": torch.__version__,
            "python": platform.python_version()}


def run_table(name: str, store: ResultStore, inputs: InputsSource, *, smoke: bool = False,
              protocol: Protocol | None = None, seeds: Sequence[int] = (0,), force: bool = False,
              device: str = "cpu", progress: bool = False,
              log: Callable[[str], None] | None = None) -> TableRun:
    """Run every cell of table ``name`` that the store does not hold yet.

    Parameters
    ----------
    name : str
        ``"table1"``, ``"table5"`` or ``"table7"`` (see :mod:`dmlp_plugin.reproduce.tables`).
    store : ResultStore
        Where finished cells are read from and written to, one file each as it finishes,
        so an interrupted run resumes.
    inputs : Inputs or callable returning Inputs
        The full CIFAR-10 inputs. A callable is called only if some cell must run, so a
        finished table is re-printed without the data files.
    smoke : bool
        Use :data:`~dmlp_plugin.reproduce.tables.SMOKE` (a small, fast run) instead of
        :data:`~dmlp_plugin.reproduce.tables.FULL`; ignored when ``protocol`` is given.
    seeds : sequence of int
        One cell per setting and seed (noise draw, trusted draw and engine seed).
    force : bool
        Recompute cells even when stored.
    device : str
        Where purification and the linear probe run.
    progress : bool
        Draw a progress bar over the cells (stderr).
    log : callable, optional
        Called with one line per computed cell.
    """
    table = get_table(name)
    protocol = protocol or (SMOKE if smoke else FULL)
    cells = table.cells(list(seeds))
    start = time.perf_counter()
    positions, found = store.pending(table.name, [cell.cell_id(protocol) for cell in cells], force=force)
    todo = [cells[k] for k in positions]
    if todo:
        full = inputs() if callable(inputs) else inputs
        data = subset(full, protocol.train_rows, test=protocol.test_rows)
        if protocol.feature_dims is not None and protocol.feature_dims < data.train.shape[1]:
            k = protocol.feature_dims
            data = Inputs(np.ascontiguousarray(data.train[:, :k]), np.ascontiguousarray(data.test[:, :k]),
                          data.clean, data.test_labels)
        code = code_version()
        with progress_bar(progress, len(todo), f"{table.name}{' (smoke)' if protocol.smoke else ''}") as advance:
            for cell in todo:
                record = run_cell(cell, protocol, data, device=device, code=code)
                store.save(record)
                found[record["cell_id"]] = record
                if log is not None:
                    m = record["metrics"]
                    log(f"{table.name} {cell.panel:<16} {cell.series:<28} seed {cell.seed}: label acc "
                        f"{100 * m['label_accuracy']:6.2f}"
                        + (f", linear test {100 * m['linear_test_accuracy']:5.2f}"
                           if m.get("linear_test_accuracy") is not None else "")
                        + f"  ({record['total_s']:.1f} s)")
                if advance is not None:
                    advance(1, status=f"{cell.panel}, {cell.series}")
    records = [found[cell.cell_id(protocol)] for cell in cells]
    return TableRun(table, protocol, records, len(todo), len(cells) - len(todo), time.perf_counter() - start)


def run_cell(cell: CellSpec, protocol: Protocol, inputs: Inputs, *, device: str = "cpu",
             code: dict[str, str] | None = None) -> dict[str, Any]:
    """Compute one cell on ``inputs`` (already cut to the protocol's subset) and return
    its record (see ``docs/reproduce.md`` for the fields)."""
    t0 = time.perf_counter()
    clean = inputs.clean
    noisy = noisy_labels(clean, cell.noise, cell.rate, cell.seed)
    num_trusted = protocol.trusted(cell.num_trusted)
    trusted = draw_trusted(len(clean), num_trusted, cell.seed)
    mask = np.ones(len(clean), bool)
    mask[trusted] = False
    config = None
    notes: list[str] = []
    history: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    purify_s = 0.0
    if cell.method == "classifier":
        # What a user holds without purification: the noisy labels, the trusted rows clean.
        labels = noisy.copy()
        labels[trusted] = clean[trusted]
    else:
        from ..purify import purify_dataset

        config = protocol.adapt(cell.config)
        start = time.perf_counter()
        try:
            # Kept in the record rather than printed: a smoke run's small trusted sets warn
            # on every cell, and the warning belongs to the number it qualifies.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = purify_dataset(inputs.train, noisy, val_indices=trusted, val_labels=clean[trusted],
                                        num_classes=NUM_CLASSES, config=config, seed=cell.seed, device=device,
                                        clean_labels=clean, threads=None)
            notes = sorted({str(w.message) for w in caught})
        except LabelError as exc:
            raise LabelError(f"{cell.table} {cell.panel}, {cell.series}, seed {cell.seed}: {exc} "
                             f"(a {num_trusted}-sample trusted set; try another seed)") from None
        purify_s = time.perf_counter() - start
        labels = result.labels
        history = [_finite(entry) for entry in result.history]
        # Scored after the loop (the default's selection); one of them gave the labels.
        candidates = [_finite(c) for c in result.metadata.get("candidates") or []]
    given_acc = float((noisy[mask] == clean[mask]).mean())
    label_acc = float((labels[mask] == clean[mask]).mean())
    probe_start = time.perf_counter()
    test_acc = probe_accuracy(inputs, labels, protocol.probe_iters, device=device)
    probe_s = time.perf_counter() - probe_start
    metrics = {
        "label_accuracy": label_acc,
        "given_label_accuracy": given_acc,
        "realised_noise": 1.0 - given_acc,
        "changed": int((labels[mask] != noisy[mask]).sum()),
        "linear_test_accuracy": test_acc,
    }
    return {
        **record_header(cell, protocol),
        "method": cell.method,
        "settings": cell.settings(protocol),
        "config": config.to_dict() if config is not None else None,
        "seed": cell.seed,
        "num_train": int(len(clean)),
        "num_test": int(len(inputs.test_labels)),
        "feature_dims": int(inputs.train.shape[1]),
        "num_trusted": num_trusted,
        "code": code or code_version(),
        "device": device,
        "history": history,
        "candidates": candidates,
        "metrics": metrics,
        # rows: the given (noisy) label, columns: the label after purification; non-trusted rows
        "confusion_given_purified": _confusion(noisy[mask], labels[mask]),
        # rows: the clean label, columns: the label after purification; non-trusted rows
        "confusion_clean_purified": _confusion(clean[mask], labels[mask]),
        "warnings": notes,
        "paper": {"value": cell.paper, "ref": cell.paper_ref} if cell.paper is not None else None,
        "purify_s": purify_s,
        "probe_s": probe_s,
        "total_s": time.perf_counter() - t0,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _confusion(rows: np.ndarray, cols: np.ndarray) -> list[list[int]]:
    return np.bincount(rows * NUM_CLASSES + cols, minlength=NUM_CLASSES ** 2).reshape(
        NUM_CLASSES, NUM_CLASSES).tolist()


def _finite(entry: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN or infinity; a diverged loss is stored as null rather than breaking the file.
    out = {}
    for k, v in entry.items():
        if isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, np.integer)):
            out[k] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[k] = float(v) if math.isfinite(v) else None
        else:
            out[k] = v
    return out
