"""Training features as the engine reads them: whole on the device, or a chunk of rows at a time.

The default method touches the training features only through a few row-wise products:
the Gram matrix ``[X 1]ᵀ[X 1]``, right-hand sides ``[X 1]ᵀY``, scores ``XW``, and the
logistic head's ``XW``/``GᵀX`` pairs. Each of these is a sum over rows, or is computed
row by row, so it can run over chunks of rows read from a host array (a memory-mapped
``.npy`` in float16 or float32, say) and converted to float32 on the device one chunk at a
time. Only ``(N, C)``-sized tensors then stay whole; ``N × d`` never does.

:class:`FeatureRows` holds either a device tensor, read as one chunk, which is exactly
the in-memory path (same operations, same order, same result bits), or a host array and
the rows to read, in chunks of ``chunk_rows``. Sums over chunks are accumulated in float64,
so a streamed run agrees with the in-memory one to float32 rounding.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

__all__ = ["FeatureRows", "as_rows", "gram", "xty_rows", "scores", "scores_rows", "per_row_output",
           "column_mean", "mean_square"]


class FeatureRows:
    """``(N, d)`` training features, whole (a tensor) or read in chunks from a host array.

    Parameters
    ----------
    source : torch.Tensor or numpy.ndarray
        A tensor is used as it is, on its device, as one chunk. A numpy array (a memmap
        is never read whole) is read in chunks of ``chunk_rows`` rows, converted to
        ``dtype`` on ``device``.
    rows : numpy.ndarray, optional
        With a numpy source: the rows of ``source`` that make up the training set, in
        order (default: all).
    device, dtype
        Where and in what precision chunks of a numpy source are computed on.
    chunk_rows : int, optional
        Rows per chunk of a numpy source (default: all rows in one chunk).
    shard : (int, int), optional
        Under ``torch.distributed``: the range of rows this process reads. Sums over rows
        are then all-reduced over the default process group, and per-row outputs filled in
        by each process and all-reduced, so every process ends with the same values (the
        rows' features are divided between processes; everything of size N×C is not).
    """

    def __init__(self, source: torch.Tensor | np.ndarray, *, rows: np.ndarray | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 chunk_rows: int | None = None, shard: tuple[int, int] | None = None) -> None:
        self.shard = shard
        if isinstance(source, torch.Tensor):
            if rows is not None or chunk_rows is not None or shard is not None:
                raise ValueError("a tensor source is read whole: rows, chunk_rows and shard are for a numpy source")
            self.tensor: torch.Tensor | None = source
            self.shape = tuple(source.shape)
            self.dtype, self.device = source.dtype, source.device
            self.chunk_rows = self.shape[0]
            return
        self.tensor = None
        self.source, self.rows = source, rows
        n = len(rows) if rows is not None else source.shape[0]
        self.shape = (n, source.shape[1])
        self.dtype, self.device = dtype, torch.device(device)
        held = n if shard is None else shard[1] - shard[0]
        self.chunk_rows = max(1, min(held, chunk_rows or held))

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def streamed(self) -> bool:
        """Whether the rows are read in more than one chunk (or shared between processes)."""
        return self.tensor is None and (self.chunk_rows < self.shape[0] or self.shard is not None)

    def bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of each chunk this process reads, in training-row numbers."""
        lo, hi = (0, self.shape[0]) if self.shard is None else self.shard
        step = self.chunk_rows
        return [(a, min(a + step, hi)) for a in range(lo, hi, step)]

    def reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the processes that share the rows (``t`` itself in one process)."""
        if self.shard is not None:
            torch.distributed.all_reduce(t)
        return t

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` as a ``dtype`` tensor on the device."""
        if self.tensor is not None:
            return self.tensor[start:stop]
        part = self.source[start:stop] if self.rows is None else self.source[self.rows[start:stop]]
        return self._tensor(part)

    def __getitem__(self, rows: slice) -> torch.Tensor:
        """Rows ``rows.start:rows.stop``, for code that slices rows (the linear EAC head)."""
        return self.read(rows.start, rows.stop)

    def read_rows(self, indices: np.ndarray) -> torch.Tensor:
        """Rows ``indices`` (training-row numbers, any order) as a ``dtype`` tensor on the device."""
        if self.tensor is not None:
            return self.tensor[torch.as_tensor(indices, device=self.device)]
        return self._tensor(self.source[indices if self.rows is None else self.rows[indices]])

    def _tensor(self, part: np.ndarray) -> torch.Tensor:
        # torch wants writable memory: a slice of a read-only memory map is copied first
        # (in its own dtype: float16 stays half the size until the device converts it).
        if not (part.flags.writeable and part.flags.c_contiguous):
            part = np.array(part)
        return torch.from_numpy(part).to(self.device, self.dtype)

    def chunks(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(start, stop, rows)`` for each chunk, in order."""
        for start, stop in self.bounds():
            yield start, stop, self.read(start, stop)

    def whole(self) -> torch.Tensor:
        """All rows as one tensor: the source tensor itself, or every chunk read into one."""
        if self.tensor is not None:
            return self.tensor
        if self.shard is not None:
            raise ValueError("the rows are shared between processes: no process holds them whole")
        return torch.cat([chunk for _, _, chunk in self.chunks()])


def as_rows(x: torch.Tensor | FeatureRows) -> FeatureRows:
    return x if isinstance(x, FeatureRows) else FeatureRows(x)


def gram(x: torch.Tensor | FeatureRows) -> torch.Tensor:
    """``[x 1]ᵀ[x 1]`` as float64, without materialising the bias column.

    Each chunk's product runs in the features' precision (float32 is twice as fast as
    float64); its rounding error is far smaller than the default relative ridge of 1e-3.
    """
    x = as_rows(x)
    d = x.shape[1]
    out = torch.zeros(d + 1, d + 1, dtype=torch.float64, device=x.device)
    for _, _, chunk in x.chunks():
        out[:d, :d] += (chunk.T @ chunk).double()
        out[:d, d] += chunk.sum(0).double()  # a dtype= argument would copy the chunk to float64 first
    x.reduce_sum(out)
    out[d, :d] = out[:d, d]
    out[d, d] = x.shape[0]
    return out


def xty_rows(x: torch.Tensor | FeatureRows, y_rows: torch.Tensor) -> torch.Tensor:
    """``[x 1]ᵀ y`` (d+1, M) in float64 for ``y`` given as rows ``yᵀ`` (M, N).

    ``yᵀx`` reads ``x`` in its storage order and runs ~1.7× faster on CPU than ``xᵀy``,
    which is the same product.
    """
    x = as_rows(x)
    out = torch.zeros(y_rows.shape[0], x.shape[1], dtype=torch.float64, device=y_rows.device)
    for start, stop, chunk in x.chunks():
        out += (y_rows[:, start:stop] @ chunk).double()
    x.reduce_sum(out)
    return torch.cat([out, y_rows.sum(1, keepdim=True).double()], 1).T


def scores(x: torch.Tensor | FeatureRows, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight + bias``: (N, k) for ``weight`` (d, k) and ``bias`` (k,)."""
    x = as_rows(x)
    if x.tensor is not None:
        return x.tensor @ weight + bias
    out = per_row_output(x, (x.shape[0], weight.shape[1]), weight.dtype)
    for start, stop, chunk in x.chunks():
        torch.addmm(bias, chunk, weight, out=out[start:stop])
    return x.reduce_sum(out)


def scores_rows(x: torch.Tensor | FeatureRows, weight_rows: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
    """``weight_rows @ xᵀ + bias``: (k, N) for ``weight_rows`` (k, d) and ``bias`` (k, 1).

    Scores laid out one row per output, for softmaxes across rows of length N.
    """
    x = as_rows(x)
    if x.tensor is not None:
        return weight_rows @ x.tensor.T + bias
    out = per_row_output(x, (weight_rows.shape[0], x.shape[0]), weight_rows.dtype)
    for start, stop, chunk in x.chunks():
        out[:, start:stop] = weight_rows @ chunk.T + bias
    return x.reduce_sum(out)


def per_row_output(x: FeatureRows, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A tensor for an output with one entry per row, which each process fills for its own
    rows: zeros where others will write (so the all-reduce gathers), else uninitialised."""
    return (torch.zeros if x.shard is not None else torch.empty)(shape, dtype=dtype, device=x.device)


def column_mean(x: torch.Tensor | FeatureRows) -> torch.Tensor:
    """The mean row, (d,)."""
    x = as_rows(x)
    if x.tensor is not None:
        return x.tensor.mean(0)
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for _, _, chunk in x.chunks():
        total += chunk.sum(0).double()
    return (x.reduce_sum(total) / x.shape[0]).to(x.dtype)


def mean_square(x: torch.Tensor | FeatureRows) -> torch.Tensor:
    """The mean of the squared entries, as a float64 0-d tensor."""
    x = as_rows(x)
    if x.tensor is not None:
        return torch.linalg.vector_norm(x.tensor).double().square() / x.tensor.numel()
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for _, _, chunk in x.chunks():
        total += torch.linalg.vector_norm(chunk).double().square()
    return x.reduce_sum(total) / (x.shape[0] * x.shape[1])
