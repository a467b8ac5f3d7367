"""Whether a purification holds its features in memory or reads them in chunks, and how big.

Under :attr:`PurifyConfig.max_memory <dmlp_plugin.PurifyConfig>` the engine reads the
training features a chunk of rows at a time (:class:`~dmlp_plugin.engine.rows.FeatureRows`)
whenever holding them whole, in float32 on the device, would not fit the budget; IPC then
works a group of batches at a time (:mod:`dmlp_plugin.engine.ipc_groups`). What stays
whole is per-row state of ``O(N·C)``: labels, the fold chains, the candidates' posteriors,
and with IPC the batches' solvers unless they are spilled to a file. The estimates below
are upper bounds on the engine's allocations (``benchmarks/scale.py`` sets them beside
peak RSS).

The pages of a memory-mapped feature file are not counted: they belong to the OS page
cache, which drops them under memory pressure and refills them from the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import AnyConfig, PaperConfig, PurifyConfig
from .argument_names import shown
from .errors import InputError
from .sizes import format_bytes, parse_memory

__all__ = ["MemoryPlan", "plan_memory"]

#: Rows per chunk at most: larger chunks make no product faster, only the buffers bigger.
MAX_CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class MemoryPlan:
    """How the engine reads the training features: ``chunk_rows`` None means whole."""

    chunk_rows: int | None
    in_memory_bytes: int  # the estimate for holding the features whole
    streamed_bytes: int | None  # the estimate with chunks of chunk_rows (None: not streamed)
    #: IPC only: keep the batches' solvers in a temporary file, not in RAM.
    spill: bool = False

    @property
    def streamed(self) -> bool:
        return self.chunk_rows is not None

    def describe(self) -> dict[str, Any]:
        """For a result's metadata: how the features were read and the estimate behind it."""
        return {"streamed": self.streamed, "chunk_rows": self.chunk_rows, "spilled": self.spill,
                "estimated_bytes": self.streamed_bytes if self.streamed else self.in_memory_bytes}


def _per_row_state(num_classes: int, config: AnyConfig) -> int:
    """Bytes per training row of the state that stays whole: labels and their copies, the
    least-squares head's fold chains with their scores and targets (5 folds), and the
    logistic candidates' scores and posteriors, all float32."""
    decays = len(config.logistic_weight_decays) if isinstance(config, PurifyConfig) and config.logistic_candidate else 0
    vectors = 12 + 3 * 5 + 3 * decays
    return 4 * num_classes * vectors


def _per_chunk_row(dim: int, num_classes: int, source_itemsize: int, config: AnyConfig) -> int:
    """Bytes per row of a chunk: the rows as read and in float32, the logistic fits'
    score buffers (every head, twice: a full chunk and a short last one) and a scores row."""
    heads = len(config.logistic_weight_decays) * 6 if isinstance(config, PurifyConfig) and config.logistic_candidate else 0
    return dim * (source_itemsize + 4) + 2 * 2 * heads * num_classes * 4 + 5 * num_classes * 4


def plan_memory(n: int, dim: int, num_classes: int, config: AnyConfig, *,
                source_dtype: np.dtype = np.dtype(np.float32), views: int = 1,
                held_rows: int | None = None) -> MemoryPlan:
    """Read the features whole when they fit ``config.max_memory`` (or there is none), else
    in the largest chunks that fit it.

    ``held_rows``: under torchrun, the rows whose features this process reads (default: all
    ``n``); the per-row state is kept for all ``n`` rows in every process.

    With IPC (paper mode) a chunk is a group of whole batches, and the batches' solvers
    (as large as the features) stay in RAM when they fit beside the state and one batch,
    else in a temporary file (``spill``).

    Raises
    ------
    InputError
        When even chunks of a few rows (with IPC, one batch) cannot fit, naming the
        smallest budget that would.
    """
    budget = parse_memory(config.max_memory)
    state = n * _per_row_state(num_classes, config)
    held = n if held_rows is None else held_rows
    ipc = isinstance(config, PaperConfig)  # its batches exist when IPC is off too (the head's rows)
    # IPC keeps each batch's features and solver beside the features: twice their size again.
    storage = 2 if ipc and config.precision == "bfloat16" else 4
    batched = 2 * held * dim * storage if ipc else 0
    # Whole: the float32 features (and their copy while being made) plus the per-row state
    # and the logistic fits' buffers over all rows.
    in_memory = (views * (held * dim * (4 + source_dtype.itemsize) + batched) + state
                 + held * _per_chunk_row(0, num_classes, 0, config))
    if budget is None or in_memory <= budget:
        return MemoryPlan(None, in_memory, None)
    per_row = views * _per_chunk_row(dim, num_classes, source_dtype.itemsize, config)
    fewest, store, spill = 256, 0, False
    if ipc:
        # A group of batches on the device: its rows as read, in float32, and their solvers.
        per_row += views * dim * 2 * storage
        fewest = min(held, config.batch_size)  # one batch at least
        store = views * held * dim * storage  # every batch's solver, kept between epochs
        spill = budget - state - store < fewest * per_row
    room = budget - state - (0 if spill else store)
    rows = min(max(MAX_CHUNK_ROWS, fewest), held, room // per_row) if room > 0 else 0
    if rows < fewest:
        raise InputError(
            f"{shown('max_memory')} {format_bytes(budget)} cannot hold a purification of {n:,} rows of {dim} dims: "
            f"the per-row state alone takes {format_bytes(state)}; at least "
            f"{format_bytes(state + fewest * per_row)} is needed")
    return MemoryPlan(int(rows), in_memory, state + int(rows) * per_row + (0 if spill else store), spill)
