"""EAC, extrinsic auxiliary correction: the paper's linear head trained on the current labels.

The head ``C`` is trained with cross-entropy to the current (hard) labels, a confidence
penalty (``+ w·Σ p log p``, which discourages over-confident predictions) and a
class-balance term ``KL(π ‖ mean p)``. Every ``T`` epochs its predictions are mixed into
the labels, ``Y ← (1 − η)·Y + η·C(F)`` (the paper's Eq. 11).

Softmax is applied once, to the logits. The official script's head ends in
``nn.Softmax`` and then applies softmax again inside the losses (two to four times in
all), which flattens the distributions so much that the entropy and prior terms are
nearly constant; its prior weight of 2200 compensates for that. With a single softmax
the balance term works at weight ~1.

The head takes thousands of small Adam steps (98 an epoch in the official schedule), so
each step is a handful of fused tensor operations: the gradient is written out by hand
(:meth:`EACHead.loss` is the autograd reference the tests compare it with) and the
weights and bias live in one tensor updated by the same Adam as the labels.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..threads import torch_threads

from .label_update import LabelOptimizer
from .softmax import softmax_rows

__all__ = ["EACHead", "slice_schedule"]


class EACHead:
    """A linear classifier on frozen features, trained by mini-batch Adam.

    Parameters
    ----------
    dim, num_classes : int
    prior : (C,) tensor
        Target class distribution of the balance term.
    lr, betas, weight_decay
        Adam settings (decay as ``torch.optim.Adam``'s, on weights and bias).
    conf_weight, balance_weight : float
        Weights of the confidence penalty and the balance term.
    generator : torch.Generator
        Source of the initial weights (CPU), for determinism.
    """

    def __init__(self, dim: int, num_classes: int, *, prior: torch.Tensor, lr: float = 0.03,
                 betas: tuple[float, float] = (0.5, 0.999), weight_decay: float = 3e-4,
                 conf_weight: float = 0.4, balance_weight: float = 1.0,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        bound = 1.0 / dim ** 0.5  # nn.Linear's default initialisation
        params = (torch.rand(num_classes, dim + 1, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        self.params = params.to(device=device, dtype=dtype)  # [weight | bias], (C, d+1)
        self.prior = prior.to(dtype)
        self.log_prior = self.prior.clamp_min(1e-12).log()
        self.conf_weight = conf_weight
        self.balance_weight = balance_weight
        self.optimizer = LabelOptimizer(self.params, kind="adam", lr=lr, betas=betas,
                                        weight_decay=weight_decay)
        self._onehot_buffer: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        return self.params[:, :-1]

    @property
    def bias(self) -> torch.Tensor:
        return self.params[:, -1]

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.weight, self.bias)

    @torch.no_grad()
    def predict_proba(self, features: torch.Tensor, *, chunk: int = 65536) -> torch.Tensor:
        """``softmax(C(F))`` for any number of rows, chunked to bound memory."""
        return torch.cat([softmax_rows(self.logits(f)) for f in features.split(chunk)])

    def loss(self, features: torch.Tensor, targets: torch.Tensor,
             params: torch.Tensor | None = None) -> torch.Tensor:
        """CE to ``targets`` (class indices) + confidence penalty + balance KL.

        Differentiable in ``params`` (default: the head's own), for reference gradients.
        """
        params = self.params if params is None else params
        log_p = torch.log_softmax(F.linear(features, params[:, :-1], params[:, -1]), -1)
        p = log_p.exp()
        loss = F.nll_loss(log_p, targets)
        if self.conf_weight:
            loss = loss + self.conf_weight * (p * log_p).sum(-1).mean()
        if self.balance_weight:
            mean_p = p.mean(0).clamp_min(1e-12)
            loss = loss + self.balance_weight * (self.prior * (self.log_prior - mean_p.log())).sum()
        return loss

    def loss_and_grad(self, features: torch.Tensor, targets: torch.Tensor,
                      onehot: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`loss` and its gradient with respect to ``params``, written out by hand.

        ``onehot`` (the rows of ``targets`` one-hot, optional) saves building it.
        """
        m, dim = features.shape
        if onehot is None:
            onehot = F.one_hot(targets, self.params.shape[0]).to(self.params.dtype)
        # One op per line on (m, C) tensors: a step is ~20 of them, so each one counts.
        low = features.dtype != self.params.dtype  # rows stored in bfloat16: products in it
        z = torch.mm(features, self.weight.T.to(features.dtype) if low else self.weight.T)
        z = z.to(self.params.dtype).add_(self.bias)
        z.sub_(z.amax(1, keepdim=True))
        p = z.exp()
        total = p.sum(1, keepdim=True)
        p.div_(total)
        log_p = z.sub_(total.log_())
        loss = -(onehot * log_p).sum() / m
        # ∂/∂z of CE + w_c·Σp log p + w_b·KL(π ‖ mean p), row by row:
        # p ⊙ (1 + w_c·(log p − Σp log p) + g − p·g) − onehot, with g = −w_b·π / mean p.
        if self.conf_weight:
            neg_entropy = (p * log_p).sum(1, keepdim=True)
            loss = loss + self.conf_weight * neg_entropy.sum() / m
            inner = log_p.sub_(neg_entropy).mul_(self.conf_weight)
        else:
            inner = log_p.zero_()
        if self.balance_weight:
            mean_p = p.mean(0).clamp_min_(1e-12)
            loss = loss + self.balance_weight * (self.prior * (self.log_prior - mean_p.log())).sum()
            g = (-self.balance_weight * self.prior).div_(mean_p)
            inner.add_(g).sub_((p @ g).unsqueeze(1))
        grad_z = p.mul_(inner.add_(1.0)).sub_(onehot).div_(m)
        grad = torch.empty_like(self.params)
        if low:
            grad[:, :dim].copy_(torch.mm(grad_z.T.to(features.dtype), features))
        else:
            torch.mm(grad_z.T, features, out=grad[:, :dim])
        torch.sum(grad_z, 0, out=grad[:, dim])
        return loss, grad

    def _onehot(self, targets: torch.Tensor) -> torch.Tensor:
        # Kept between calls: a fresh (N, C) tensor every epoch costs more in page faults
        # than the steps that read it.
        shape = (targets.shape[0], self.params.shape[0])
        if self._onehot_buffer is None or self._onehot_buffer.shape != shape:
            self._onehot_buffer = self.params.new_empty(shape)
        return self._onehot_buffer.zero_().scatter_(1, targets.unsqueeze(1), 1.0)

    def set_lr(self, lr: float) -> None:
        self.optimizer.lr = lr

    @torch.no_grad()
    def train_slices(self, features: torch.Tensor, targets: torch.Tensor,
                     slices: list[tuple[int, int]]) -> torch.Tensor:
        """One Adam step per ``(start, stop)`` slice of the rows of ``features``.

        Slices of consecutive rows, as the official script takes them: a slice is a view,
        read once from memory, where gathering scattered rows costs as much again.
        Returns the mean loss as a tensor (no host synchronisation).
        """
        total = self.params.new_zeros(())
        onehot = self._onehot(targets)
        with _one_cpu_thread(features.device):
            for start, stop in slices:
                loss, grad = self.loss_and_grad(features[start:stop], targets[start:stop],
                                                onehot[start:stop])
                self.optimizer.step(grad)
                total += loss
        return total / max(1, len(slices))


def slice_schedule(sizes: list[int], width: int, rows: int) -> list[tuple[int, int]]:
    """Consecutive ``rows``-row slices of each batch of a flat batch layout, in order.

    Batch ``k`` holds ``sizes[k]`` real rows starting at ``k * width`` (padding after them
    is skipped). A slice never crosses batches, so a batch's last slice may be shorter,
    as in the official script's per-batch loop.
    """
    return [(k * width + a, k * width + min(a + rows, size))
            for k, size in enumerate(sizes) for a in range(0, size, rows)]


def _one_cpu_thread(device: torch.device) -> contextlib.AbstractContextManager:
    """Run a burst of tiny CPU ops on one thread.

    A 500-row step is latency-bound: extra threads cannot speed it up, and when another
    process holds a core, OpenMP's spin-waiting makes it ~20x slower (measured: 98 steps
    took 0.09 s on one thread, 1.8 s on two with one core busy).
    """
    return torch_threads(1 if device.type == "cpu" else None)
