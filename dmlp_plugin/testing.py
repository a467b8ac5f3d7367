"""Conformance checks for adapter authors: run :func:`check_adapter` in your own tests.

    from dmlp_plugin.testing import check_adapter

    def test_my_adapter_conforms():
        check_adapter(MyAdapter)

It exercises the adapter on synthetic labels the way dmlp-plugin uses it: the class
declaration, the index map, the native label file round trip, and, on a tiny upstream
dataset from ``MyAdapter.conformance_dataset`` (or ``dataset_factory``), injection and
alignment verification, including that verification catches misaligned labels.
Importing this module does not import pytest.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .adapter import Adapter, IndexMap, validate_adapter_class
from .errors import AdapterError, AlignmentError, DmlpError

__all__ = ["check_adapter", "ConformanceReport", "UpstreamStandIn"]


class UpstreamStandIn:
    """Base of the tiny datasets adapters return from ``conformance_dataset``.

    An upstream's dataset class cannot be imported without its code, so a stand-in sets
    the attributes the adapter reads and defines ``item(index)``, the tuple the upstream's
    ``__getitem__`` returns. Images are 2x2 zeros.
    """

    def __init__(self, num_samples: int) -> None:
        self.train_data = np.zeros((num_samples, 2, 2, 3), np.uint8)

    def item(self, index: int) -> tuple:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple:
        return self.item(int(index))

    def __len__(self) -> int:
        return len(self.train_data)


@dataclass
class ConformanceReport:
    """What :func:`check_adapter` ran: the names of the checks passed and skipped (with why)."""

    adapter: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def check_adapter(cls: type[Adapter], *, options: dict[str, Any] | None = None,
                  dataset_factory: Callable[[np.ndarray], Any] | None = None,
                  num_samples: int = 60, num_classes: int = 5, seed: int = 0,
                  tmp_dir: str | Path | None = None) -> ConformanceReport:
    """Check that ``cls`` behaves as dmlp-plugin expects of an adapter.

    Parameters
    ----------
    cls
        The adapter class, as passed to ``register``.
    options
        Keyword arguments to construct it with (default: none).
    dataset_factory
        ``factory(labels) -> dataset``: a tiny upstream dataset object holding
        ``labels`` (``(N,)``, dataset order). Default: ``cls.conformance_dataset``.
        Without either, the dataset checks are skipped.
    num_samples, num_classes, seed
        Size and seed of the synthetic labels.
    tmp_dir
        Where to write label files (default: a temporary folder, removed afterwards).

    Returns
    -------
    ConformanceReport

    Raises
    ------
    AdapterError
        Listing every failed check with its error.
    """
    validate_adapter_class(cls)  # nothing else is meaningful for an incomplete class
    report = ConformanceReport(adapter=cls.name)
    failures: list[str] = []
    rng = np.random.default_rng(seed)
    given = rng.integers(0, num_classes, size=num_samples).astype(np.int64)
    given[:num_classes] = np.arange(num_classes)  # every class present
    purified = (given + 1 + rng.integers(0, num_classes - 1, size=num_samples)) % num_classes

    def run(name: str, check: Callable[[], Any]) -> Any:
        try:
            out = check()
        except Exception as exc:  # a conformance check reports every failure, whatever its type
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            return None
        report.passed.append(name)
        return out

    adapter = run("construct", lambda: cls(**(options or {})))
    if adapter is None:
        raise AdapterError(_summary(cls, failures))

    run("index map", lambda: _check_index_map(adapter, num_samples))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(tmp_dir) if tmp_dir is not None else Path(scratch)
        run("label file round trip", lambda: _check_files(adapter, given, purified, folder, num_classes))

    factory = dataset_factory or cls.conformance_dataset
    try:
        probe = factory(given)
    except Exception as exc:  # reported like any failed check
        failures.append(f"conformance dataset: {type(exc).__name__}: {exc}")
    else:
        if probe is None:
            report.skipped["dataset checks"] = (f"{cls.__name__}.conformance_dataset() returned None "
                                                "and no dataset_factory was given")
        else:
            run("get_labels", lambda: _check_get_labels(adapter, probe, given))
            run("verify_alignment accepts aligned labels", lambda: adapter.verify_alignment(factory(given), given))
            run("inject", lambda: _check_inject(adapter, factory(given), given, purified, num_classes))
            run("verify_alignment rejects misaligned labels",
                lambda: _check_detects_misalignment(adapter, factory(given), given, purified))
            run("inject rejects a result purified on another dataset size",
                lambda: _check_wrong_length(adapter, factory(given), given, purified, num_classes))
            run("inject rejects a result purified from other noisy labels",
                lambda: _check_detects_other_given(adapter, factory(given), given, purified, num_classes))
    if failures:
        raise AdapterError(_summary(cls, failures))
    return report


def _summary(cls: type, failures: list[str]) -> str:
    lines = "\n".join(f"  - {f}" for f in failures)
    return f"adapter {cls.__name__} ({getattr(cls, 'name', '?')!r}) failed {len(failures)} conformance check(s):\n{lines}"


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AdapterError(message)


def _check_index_map(adapter: Adapter, n: int) -> None:
    mapping = adapter.index_map()
    _expect(isinstance(mapping, IndexMap), f"index_map() returned {type(mapping).__name__}, not an IndexMap")
    first, second = mapping.indices(n), mapping.indices(n)  # validates range and uniqueness
    _expect(np.array_equal(first, second), "index_map() is not deterministic: two calls gave different indices")


def _check_files(adapter: Adapter, given: np.ndarray, purified: np.ndarray, folder: Path,
                 num_classes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"labels{adapter.label_suffix}"
    written = adapter.write_labels(given.copy(), path)
    _expect(isinstance(written, Path) and written.exists(),
            f"write_labels() must return the Path it wrote, got {written!r}")
    back = np.asarray(adapter.read_labels(written))
    _expect(back.dtype == np.int64, f"read_labels() returned dtype {back.dtype}, expected int64")
    _expect(np.array_equal(back, given), "read_labels(write_labels(labels)) differs from labels")
    # Overwriting must work too, and export() must accept a PurifyResult.
    result = _result(given, purified, num_classes)
    adapter.export(result, written)
    _expect(np.array_equal(adapter.read_labels(written), purified),
            "export(result) then read_labels() does not give result.labels")
    leftovers = sorted(p.name for p in folder.iterdir() if p != written)
    _expect(not leftovers, f"write_labels() left files behind: {leftovers}; write atomically")


def _check_get_labels(adapter: Adapter, dataset: Any, given: np.ndarray) -> None:
    held = np.asarray(adapter.get_labels(dataset))
    expected = adapter.index_map(dataset).apply(given)
    _expect(held.shape == expected.shape and np.array_equal(held, expected),
            "get_labels() on a dataset built from labels does not give those labels in index-map order")


def _check_inject(adapter: Adapter, dataset: Any, given: np.ndarray, purified: np.ndarray,
                  num_classes: int) -> None:
    returned = adapter.inject(dataset, _result(given, purified, num_classes), num_checks=None)
    _expect(returned is dataset, "inject() must return the dataset it was given")
    expected = adapter.index_map(dataset).apply(purified)
    _expect(np.array_equal(np.asarray(adapter.get_labels(dataset)), expected),
            "after inject(), get_labels() does not give the injected labels")


def _check_detects_misalignment(adapter: Adapter, dataset: Any, given: np.ndarray,
                                purified: np.ndarray) -> None:
    adapter.inject(dataset, purified, verify=False)
    try:
        adapter.verify_alignment(dataset, given, num_checks=None)
    except AlignmentError:
        return
    raise AdapterError("verify_alignment() accepted labels that differ from what the loader yields at every position")


def _check_wrong_length(adapter: Adapter, dataset: Any, given: np.ndarray, purified: np.ndarray,
                        num_classes: int) -> None:
    shorter = _result(given[:-1], purified[:-1], num_classes)
    try:
        adapter.inject(dataset, shorter)
    except DmlpError:
        return
    # A stored index array that never refers to the last sample is unaffected by it.
    if adapter.index_map(dataset).kind != "stored":
        raise AdapterError("inject() accepted a result purified on one sample fewer than the dataset's")


def _check_detects_other_given(adapter: Adapter, dataset: Any, given: np.ndarray, purified: np.ndarray,
                               num_classes: int) -> None:
    other = _result(np.roll(given, 1), purified, num_classes)
    try:
        adapter.inject(dataset, other)
    except AlignmentError:
        return
    raise AdapterError("inject() accepted a result whose given labels differ from the labels the dataset holds; "
                       "does get_labels() read the label array the upstream loads?")


def _result(given: np.ndarray, purified: np.ndarray, num_classes: int) -> Any:
    from .result import PurifyResult

    return PurifyResult.from_soft_labels(np.eye(num_classes, dtype=np.float32)[purified], given)
