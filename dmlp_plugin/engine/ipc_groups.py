"""IPC over batches that are not all held at once: a group of batches at a time, or split
between processes.

In memory, :func:`~.ipc.factor` gathers every batch's features ``(B, b, d)`` and keeps each
batch's solver ``Kᵀ`` beside them: twice the features' size. :class:`GroupedBatches` keeps
only the solvers, in a host store (in RAM, or in a temporary file when a memory budget says
so), reads a group's features from the training rows (:class:`~.rows.FeatureRows`) when
the epoch reaches it, and steps the batches one group at a time. Each batch's loss and
gradient depend only on its own labels and the trusted set, so the result is the batched
one, batch for batch.

Under ``torch.distributed`` (FeatureRows with a ``shard``), each process factors and steps
only the batches in its range; the losses and gradients, zero outside a process's range,
are all-reduced, so every process applies the same label update to all labels. The linear
EAC head reads its slices' rows from the training rows in every process (its steps are
sequential and small: 98 slices of 500 rows an epoch) and takes the same steps everywhere.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator

import numpy as np
import torch

from .ipc import IPCBatches, IPCLossWeights, batch_layout, ipc_loss_and_grad, solve_batches
from .rows import FeatureRows

__all__ = ["GroupedBatches", "BatchRows", "grouped_loss_and_grad"]


class GroupedBatches:
    """The factored IPC batches of partition ``index``, held one group at a time.

    Parameters
    ----------
    rows : FeatureRows
        The training features, read by row number.
    index : (B, b) long
        The partition (:func:`~.ipc.partition`), on the compute device.
    ridge, storage
        As :func:`~.ipc.factor`.
    group_batches : int
        Batches factored and stepped at once.
    spill_dir : str, optional
        Keep the solvers in a temporary file in this folder instead of in RAM.
    """

    def __init__(self, rows: FeatureRows, index: torch.Tensor, *, ridge: float, storage: torch.dtype,
                 group_batches: int, spill_dir: str | None = None) -> None:
        self.source, self.index, self.storage = rows, index, storage
        self.mask, self.counts, self.positions = batch_layout(index, rows.dtype)
        self.rows = index.reshape(-1)[self.positions]
        self.group_batches = max(1, int(group_batches))
        num, width = index.shape
        self.distributed = rows.shard is not None
        if self.distributed:
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            self.owned = (num * rank // world, num * (rank + 1) // world)
        else:
            self.owned = (0, num)
        lo, hi = self.owned
        self.store = _host_tensor((hi - lo, width, rows.shape[1]), storage, spill_dir)
        for g_lo, g_hi in self.groups():
            solve_batches(self.batch_features(g_lo, g_hi), self.counts[g_lo:g_hi], ridge=ridge,
                          storage=storage, out=self.store[g_lo - lo:g_hi - lo])

    @property
    def num_batches(self) -> int:
        return self.index.shape[0]

    def groups(self) -> Iterator[tuple[int, int]]:
        """``(lo, hi)`` batch ranges of this process's batches, ``group_batches`` at a time."""
        lo, hi = self.owned
        for start in range(lo, hi, self.group_batches):
            yield start, min(hi, start + self.group_batches)

    def batch_features(self, lo: int, hi: int) -> torch.Tensor:
        """Features of batches ``lo:hi`` (hi-lo, b, d) in float32 on the device, padding rows zero."""
        index = self.index[lo:hi]
        flat = self.source.read_rows(index.clamp(min=0).reshape(-1).cpu().numpy())
        flat.mul_(self.mask[lo:hi].reshape(-1, 1).to(flat.dtype))
        return flat.view(*index.shape, -1)

    def part(self, lo: int, hi: int) -> IPCBatches:
        """Batches ``lo:hi`` as in-memory :class:`~.ipc.IPCBatches`, for one step."""
        offset = self.owned[0]
        solver_t = self.store[lo - offset:hi - offset].to(self.index.device, non_blocking=True)
        empty = self.index.new_empty(0)
        return IPCBatches(index=self.index[lo:hi], mask=self.mask[lo:hi],
                          features=self.batch_features(lo, hi).to(self.storage), solver=solver_t.transpose(1, 2),
                          counts=self.counts[lo:hi], positions=empty, rows=empty)

    # Laying per-sample tensors out in batches: as IPCBatches does.
    gather = IPCBatches.gather
    scatter = IPCBatches.scatter


def grouped_loss_and_grad(labels: torch.Tensor, batches: GroupedBatches, val_features: torch.Tensor,
                          val_targets: torch.Tensor, prior: torch.Tensor,
                          weights: IPCLossWeights = IPCLossWeights()) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~.ipc.ipc_loss_and_grad` group by group (and process by process)."""
    loss = labels.new_zeros(batches.num_batches)
    grad = torch.zeros_like(labels)
    for lo, hi in batches.groups():
        loss[lo:hi], grad[lo:hi] = ipc_loss_and_grad(labels[lo:hi], batches.part(lo, hi), val_features,
                                                     val_targets, prior, weights)
    if batches.distributed:
        torch.distributed.all_reduce(loss)
        torch.distributed.all_reduce(grad)
    return loss, grad


class BatchRows:
    """The training rows in batch layout, flat (B·b, d), read a slice at a time: what the
    linear EAC head steps through (``head_rows``) when the batches are not held."""

    def __init__(self, batches: GroupedBatches) -> None:
        self.batches = batches
        self.device, self.dtype = batches.index.device, batches.storage
        self.width = batches.index.shape[1]

    def __getitem__(self, rows: slice) -> torch.Tensor:
        k, start = divmod(rows.start, self.width)  # a slice never crosses batches (slice_schedule)
        index = self.batches.index[k, start:start + rows.stop - rows.start]
        return self.batches.source.read_rows(index.clamp(min=0).cpu().numpy()).to(self.dtype)


def _host_tensor(shape: tuple[int, ...], dtype: torch.dtype, spill_dir: str | None) -> torch.Tensor:
    """A CPU tensor, in RAM or backed by a temporary file in ``spill_dir``.

    The file is unlinked as soon as it is mapped: its pages live as long as the mapping, and
    nothing is left behind, whatever ends the run.
    """
    if spill_dir is None or 0 in shape:  # nothing to spill for a process without batches
        return torch.empty(shape, dtype=dtype)
    fd, path = tempfile.mkstemp(prefix="dmlp-ipc-solvers-", suffix=".bin", dir=spill_dir)
    os.close(fd)
    try:
        tensor = torch.from_file(path, shared=True, size=int(np.prod(shape)), dtype=dtype).view(shape)
    finally:
        os.unlink(path)
    return tensor
