"""IPC, intrinsic primary correction: labels as variables of a closed-form linear fit.

For one mini-batch with features ``F`` (b×d) and label variables ``Y`` (b×C), the
least-squares weights are ``W*(Y) = (FᵀF + λI)⁻¹ FᵀY = K·Y``. The trusted set's
predictions are ``F_v·W*(Y) = A·Y``, and the loss on the trusted set is differentiated
with respect to ``Y``.

All batches are stacked into one ``(B, b, d)`` tensor (the remainder batch padded with
zero rows, which contribute nothing to ``FᵀF`` or ``FᵀY`` and are masked out of the
prior term), so an epoch is a handful of batched matrix products on any device. Each
``FᵀF + λI`` is Cholesky-factored once in float64 and ``K = (FᵀF + λI)⁻¹Fᵀ`` is obtained
by triangular solves (no explicit inverse), then kept in the features' dtype (or in
bfloat16, ``precision="bfloat16"``: half the memory and half the bytes read per epoch): an
epoch is ``W = K·Y`` forward and ``∂Y = Kᵀ·∂W`` backward. ``K`` takes as much memory as
the features. (Solving against the stored factor every epoch instead would save that
memory, but batched ``cholesky_solve`` with few right-hand sides is ~30× slower than a
matrix product on CPU.)

Gradients are written out by hand rather than taken by autograd: the epoch then needs
no graph, and ``tests/test_engine_ipc.py`` checks them against autograd on a naive
per-batch formulation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from .softmax import log_softmax_rows, softmax_

__all__ = ["IPCBatches", "partition", "factor", "gather_batches", "batch_layout", "solve_batches",
           "ipc_loss_and_grad", "IPCLossWeights"]


@dataclass
class IPCBatches:
    """A training set cut into equal-size, zero-padded mini-batches, factored once."""

    index: torch.Tensor  # (B, b) long: row of the training set, or -1 for padding
    mask: torch.Tensor  # (B, b, 1) float: 1 for real rows, 0 for padding
    features: torch.Tensor  # (B, b, d) in the storage dtype, padding rows are zero
    solver: torch.Tensor  # (B, d, b) K = (FᵀF + λI)⁻¹Fᵀ, so that W*(Y) = K·Y; Kᵀ is contiguous
    counts: torch.Tensor  # (B, 1, 1) float: real rows per batch
    positions: torch.Tensor  # (N,) long: flat slot of each real row in (B*b)
    rows: torch.Tensor  # (N,) long: training-set row held at each of those slots
    _buffers: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def num_batches(self) -> int:
        return self.index.shape[0]

    def buffer(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Scratch space shaped and typed like ``like``, reused across epochs."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = self._buffers[name] = torch.empty_like(like)
        return buf

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Lay out a per-sample tensor ``(N, ...)`` as ``(B, b, ...)``, zeros at padding."""
        out = rows[self.index.clamp(min=0)]
        return out * self.mask.view(*self.mask.shape[:2], *([1] * (rows.dim() - 1))).to(out.dtype)

    def scatter(self, batched: torch.Tensor, n: int) -> torch.Tensor:
        """Inverse of :meth:`gather`: ``(B, b, ...)`` back to ``(n, ...)`` in original order."""
        out = batched.new_empty((n, *batched.shape[2:]))
        out[self.rows] = batched.reshape(-1, *batched.shape[2:])[self.positions]
        return out


def partition(n: int, batch_size: int, *, generator: torch.Generator | None = None,
              shuffle: bool = True, device: torch.device | str = "cpu") -> torch.Tensor:
    """Cut ``range(n)`` into ``ceil(n / b)`` batches of equal size; the remainder is kept.

    Sizes differ by at most one (``n=49000, b=7000`` gives seven batches of 7000; ``n=50,
    b=20`` gives three of 17, 17, 16), so no batch is a tiny, badly conditioned tail.
    Returns a ``(B, b_max)`` long tensor padded with ``-1``.
    """
    num_batches = max(1, -(-n // batch_size))
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    width = -(-n // num_batches)
    index = torch.full((num_batches * width,), -1, dtype=torch.long)
    # Spread the padding so that every batch gets at most one pad row.
    sizes = torch.full((num_batches,), n // num_batches, dtype=torch.long)
    sizes[: n % num_batches] += 1
    slots = (torch.arange(num_batches).unsqueeze(1) * width + torch.arange(width)).reshape(-1)
    valid = (torch.arange(width).unsqueeze(0) < sizes.unsqueeze(1)).reshape(-1)
    index[slots[valid]] = order
    return index.view(num_batches, width).to(device)


def factor(features: torch.Tensor, index: torch.Tensor, *, ridge: float,
           storage: torch.dtype | None = None) -> IPCBatches:
    """Gather the batches and factor ``FᵀF + λI`` once per batch, in float64.

    ``ridge`` is relative: ``λ = ridge · mean(diag(FᵀF))``, so it means the same for any
    feature scale. A batch with fewer rows than feature dimensions is singular without it:
    such a batch always warns and gets a ridge of at least ``1e-3``.

    ``storage`` is the dtype the batch features and ``K`` are kept in (default: the
    features' own); ``torch.bfloat16`` halves their memory and the bytes every epoch
    reads, while the factoring itself stays in float64.
    """
    batch_features = gather_batches(features, index)
    mask, counts, positions = batch_layout(index, features.dtype)
    storage = storage or features.dtype
    solver_t = solve_batches(batch_features, counts, ridge=ridge, storage=storage)
    return IPCBatches(index=index, mask=mask, features=batch_features.to(storage),
                      solver=solver_t.transpose(1, 2), counts=counts, positions=positions,
                      rows=index.reshape(-1)[positions])


def gather_batches(features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The rows of ``index`` (B, b) as (B, b, d), padding rows zero."""
    batch_features = features[index.clamp(min=0)]
    # Zero the padding rows in place: at most one per batch, so no pass over all rows.
    pads = torch.nonzero(index.reshape(-1) < 0).squeeze(1)
    batch_features.view(-1, features.shape[1]).index_fill_(0, pads, 0.0)
    return batch_features


def batch_layout(index: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mask`` (B, b, 1), ``counts`` (B, 1, 1) and the flat ``positions`` of the real rows."""
    mask = (index >= 0).to(dtype).unsqueeze(-1)
    # Long-index positions, found once: boolean masks in the epoch loop would sync on CUDA.
    positions = torch.nonzero(index.reshape(-1) >= 0).squeeze(1)
    return mask, mask.sum(1, keepdim=True), positions


def solve_batches(batch_features: torch.Tensor, counts: torch.Tensor, *, ridge: float,
                  storage: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
    """``Kᵀ = ((FᵀF + λI)⁻¹Fᵀ)ᵀ`` (B, b, d) in ``storage`` for each batch, factored in float64
    (into ``out`` when given)."""
    num_batches, width, d = batch_features.shape
    rel = torch.full((num_batches,), float(ridge), dtype=torch.float64, device=batch_features.device)
    small = counts.view(-1) < d
    if bool(small.any()):
        warnings.warn(
            f"IPC batch of {int(counts.min())} samples is smaller than the feature dimension {d}: "
            f"FᵀF is singular without the ridge, which is raised to at least 1e-3 for such batches "
            f"(raise batch_size to avoid this)", RuntimeWarning, stacklevel=4)
        rel = torch.where(small, rel.clamp(min=1e-3), rel)
    # K is kept as Kᵀ, contiguous (B, b, d): the layout the triangular solve produces, and
    # the one in which both of an epoch's products with it are fastest.
    solver_t = out if out is not None else torch.empty((num_batches, width, d), dtype=storage,
                                                       device=batch_features.device)
    # A few batches at a time (~32 MB of float64 each), so the float64 copies never hold
    # all batches at once: paper mode's peak memory on CIFAR-10 fell from 1.28 to 1.05 GB.
    step = max(1, (32 << 20) // (width * d * 8))
    for lo in range(0, num_batches, step):
        features64 = batch_features[lo:lo + step].double()
        gram = features64.transpose(1, 2) @ features64
        scale = torch.diagonal(gram, dim1=1, dim2=2).mean(-1).clamp(min=1e-12)
        gram.diagonal(dim1=1, dim2=2).add_((rel[lo:lo + step] * scale).unsqueeze(-1))
        chol, info = torch.linalg.cholesky_ex(gram)
        if bool((info > 0).any()):
            # Only reachable with ridge=0 on rank-deficient features.
            gram.diagonal(dim1=1, dim2=2).add_((1e-6 * scale).unsqueeze(-1))
            chol = torch.linalg.cholesky(gram)
        solver_t[lo:lo + step] = torch.cholesky_solve(features64.transpose(1, 2), chol).transpose(1, 2).to(
            solver_t.device)
    return solver_t


@dataclass(frozen=True)
class IPCLossWeights:
    ce: float = 1.0
    mse: float = 1.0
    prior: float = 1.0


def ipc_loss_and_grad(
    labels: torch.Tensor,
    batches: IPCBatches,
    val_features: torch.Tensor,
    val_targets: torch.Tensor,
    prior: torch.Tensor,
    weights: IPCLossWeights = IPCLossWeights(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trusted-set loss of every batch and its gradient with respect to the labels.

    Parameters
    ----------
    labels : (B, b, C)
        Current label variables in batch layout (padding rows are ignored).
    batches : IPCBatches
    val_features : (V, d)
    val_targets : (V, C)
        One-hot (or soft) clean labels of the trusted set.
    prior : (C,)
        Class prior of the KL term.
    weights : IPCLossWeights

    Returns
    -------
    loss : (B,)
        ``ce·CE(F_v W, y_v) + mse·Σ(F_v W − Y_v)² + prior·KL(π ‖ mean softmax(F W))`` per batch.
    grad : (B, b, C)
        ``∂loss_b / ∂Y_b``; zero on padding rows.
    """
    feats = batches.features
    # W = K·Y, computed as (Yᵀ·Kᵀ)ᵀ: Kᵀ is the contiguous one (1.5× faster on CPU).
    weights_w = _bmm(labels.transpose(1, 2), batches.solver.transpose(1, 2)).transpose(1, 2)
    val_pred = val_features @ weights_w  # (B, V, C)
    num_val = val_features.shape[0]
    log_p = log_softmax_rows(val_pred)
    residual = val_pred - val_targets
    loss = (-(val_targets * log_p).sum(-1).mean(-1) * weights.ce
            + residual.square().sum((-1, -2)) * weights.mse)
    grad_pred = (log_p.exp() - val_targets) * (weights.ce / num_val) + residual * (2.0 * weights.mse)
    grad_w = val_features.transpose(0, 1) @ grad_pred  # (B, d, C)
    if weights.prior > 0:
        # The (B, b, C) work runs in place in two buffers kept on ``batches``: a fresh
        # 2 MB tensor per operation cost as much in page faults as the products.
        probs = _bmm(feats, weights_w, out=batches.buffer("probs", labels))
        softmax_(probs, -1).mul_(batches.mask)  # padding zeroed
        mean_p = probs.sum(1, keepdim=True) / batches.counts  # (B, 1, C)
        loss = loss + weights.prior * (prior * (prior.clamp_min(1e-12).log()
                                                - mean_p.clamp_min(1e-12).log())).sum((-1, -2))
        g = -prior / mean_p.clamp_min(1e-12)  # ∂KL/∂mean_p
        centred = torch.sub(g, probs @ g.transpose(1, 2), out=batches.buffer("centred", labels))
        grad_logits = probs.mul_(centred).mul_(weights.prior / batches.counts)
        # (gᵀF)ᵀ rather than Fᵀg: the same product, reading F in storage order (~2× faster).
        grad_w = grad_w + _bmm(grad_logits.transpose(1, 2), feats).transpose(1, 2)
    grad = _bmm(batches.solver.transpose(1, 2), grad_w)  # (B, b, C); zero on padding rows
    return loss, grad


def _bmm(a: torch.Tensor, b: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` in the dtype of the stored operand (the lower precision of the two), with
    the result in the other's: stored batches may be bfloat16, label-side tensors not."""
    if a.dtype == b.dtype:
        return torch.bmm(a, b, out=out)
    stored, result = (a.dtype, b.dtype) if a.itemsize < b.itemsize else (b.dtype, a.dtype)
    product = torch.bmm(a.to(stored), b.to(stored))
    return product.to(result) if out is None else out.copy_(product)
