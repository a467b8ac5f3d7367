"""Watching what upstream DataLoaders yield: label checks, and an iteration budget.

One wrapper around ``torch.utils.data.DataLoader.__iter__`` serves two callers:

* :mod:`dmlp_integrations.runtime` (``--dmlp``): the first batches of every pass over a
  watched dataset must carry the purified labels at their sample indices; a mismatch
  stops the run (one line naming the :class:`~dmlp_plugin.errors.AlignmentError`, exit
  status 2, its traceback too under ``DMLP_DEBUG=1``) before the model learns from it.
  The first pass also checks sampled items through the dataset's ``__getitem__``. The
  run's state lives in :mod:`dmlp_integrations.state`, shared with the runtime.
* :mod:`dmlp_integrations.launch` (``dmlp run --max-iters N``): the run stops cleanly
  after ``N`` batches drawn from shuffling loaders (training loaders shuffle; test and
  evaluation loaders do not). ``--max-eval-batches K`` ends every pass over a
  non-shuffling loader after ``K`` batches, for smoke runs of upstreams that evaluate
  the whole test set before training.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from dmlp_plugin.errors import AlignmentError

from .state import CHECKED_BATCHES, active, record_loader_check, stop_on_error

__all__ = ["install_batch_checks", "set_iteration_budget", "set_eval_budget", "BudgetReached"]

_installed = False
_budget: int | None = None
_eval_budget: int | None = None
_drawn = 0
_verified: set[int] = set()


class BudgetReached(SystemExit):
    """Raised when ``--max-iters`` batches have been drawn; exits with status 0."""


def set_iteration_budget(max_iters: int | None) -> None:
    """Stop the process (status 0) once ``max_iters`` training batches have been drawn."""
    global _budget, _drawn
    _budget, _drawn = max_iters, 0
    install_batch_checks()


def set_eval_budget(max_batches: int | None) -> None:
    """End every pass over a non-shuffling (evaluation) loader after ``max_batches`` batches."""
    global _eval_budget
    _eval_budget = max_batches
    install_batch_checks()


def install_batch_checks() -> None:
    """Wrap ``DataLoader.__iter__`` once per process."""
    global _installed
    if _installed:
        return
    from torch.utils.data import DataLoader, RandomSampler

    original = DataLoader.__iter__

    def __iter__(self: Any) -> Any:
        shuffles = isinstance(getattr(self, "sampler", None), RandomSampler)
        if shuffles:
            with stop_on_error():
                _require_injection()
        it = original(self)
        watched = _watched_entry(self.dataset)
        if watched is None and not (shuffles and _budget is not None) and not (
                not shuffles and _eval_budget is not None):
            return it
        return _Watched(it, self.dataset, watched, shuffles)

    DataLoader.__iter__ = __iter__  # type: ignore[method-assign]
    _installed = True


def _require_injection() -> None:
    """Training has started: with ``--dmlp`` active, some labels must have been injected by now."""
    state = active()
    if state is not None and not state.record["injections"]:
        raise AlignmentError(
            f"--dmlp was given but training started before any label was injected: this run reads its data "
            f"through a path the {state.method} integration does not cover (another dataset than CIFAR-10, or "
            "clean labels?), so it would train on the upstream's own labels")


def _watched_entry(dataset: Any) -> tuple | None:
    state = active()
    if state is None:
        return None
    entry = state.watched.get(id(dataset))
    if entry is None or entry[0]() is not dataset:
        return None
    return entry


class _Watched:
    """An iterator over a loader's batches that checks labels and counts training batches."""

    def __init__(self, it: Any, dataset: Any, watched: tuple | None, counts: bool) -> None:
        self._it, self._dataset, self._watched, self._counts = it, dataset, watched, counts
        self._checked = 0
        self._yielded = 0

    def __iter__(self) -> "_Watched":
        return self

    def __len__(self) -> int:
        return len(self._it)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._it, name)

    def __next__(self) -> Any:
        global _drawn
        if self._counts and _budget is not None and _drawn >= _budget:
            print(f"[dmlp-plugin] dmlp run: stopping after {_drawn} training iterations (--max-iters)",
                  file=sys.stderr, flush=True)
            raise BudgetReached(0)
        if not self._counts and _eval_budget is not None and self._yielded >= _eval_budget:
            raise StopIteration
        batch = next(self._it)
        self._yielded += 1
        if self._counts:
            _drawn += 1
        if self._watched is not None and self._checked < CHECKED_BATCHES:
            with stop_on_error():  # one line and status 2, before the model sees the batch
                self._check(batch)
        return batch

    def _check(self, batch: Any) -> None:
        _, adapter, idx, part = self._watched
        result = active().result
        if id(self._dataset) not in _verified:
            # Items read through __getitem__, as the upstream reads them, once per dataset object.
            _verified.add(id(self._dataset))
            self._check_items(adapter, idx, part, result.labels)
        got = adapter.batch_labels(self._dataset, batch)
        self._checked += 1
        if got is None:
            return
        positions, labels = (np.asarray(_numpy(a)).astype(np.int64).reshape(-1) for a in got)
        expected = result.labels[idx[positions]]
        bad = np.flatnonzero(labels != expected)
        if bad.size:
            shown = "; ".join(f"position {positions[k]} (dataset index {idx[positions[k]]}): batch label "
                              f"{labels[k]}, purified {expected[k]}" for k in bad[:3])
            raise AlignmentError(f"{adapter.name} {part} loader yielded {bad.size} of {labels.size} labels that are "
                                 f"not the purified ones: {shown}")
        record_loader_check(part, idx[positions], labels)

    def _check_items(self, adapter: Any, idx: np.ndarray, part: str, labels: np.ndarray) -> None:
        from dmlp_plugin.adapter import sample_positions

        positions = sample_positions(len(idx), 32, seed=0)
        got = np.asarray(adapter.loader_labels(self._dataset, positions)).astype(np.int64)
        expected = labels[idx[positions]]
        bad = np.flatnonzero(got != expected)
        if bad.size:
            raise AlignmentError(f"{adapter.name} {part} dataset yields {bad.size} of {positions.size} sampled items "
                                 f"with labels that are not the purified ones (first at position {positions[bad[0]]})")


def _numpy(values: Any) -> Any:
    return values.detach().cpu().numpy() if hasattr(values, "detach") else values
