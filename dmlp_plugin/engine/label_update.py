"""Updating the label variables: Adam or plain gradient steps, and simplex projection.

The official code hands the whole label tensor to ``torch.optim.Adam`` and steps it once
per mini-batch, so weight decay and leftover momentum move every row, including rows
outside the batch whose gradient is zero. Here all batches are updated in one step per
epoch, each row exactly once, so decay and momentum touch only rows being updated.
"""

from __future__ import annotations

import torch

__all__ = ["LabelOptimizer", "project_simplex"]


class LabelOptimizer:
    """Adam (or SGD) over a label tensor, with decoupled bookkeeping per call.

    Parameters
    ----------
    labels : tensor
        Updated in place.
    kind : {"adam", "sgd"}
    lr, betas, weight_decay, eps
        As ``torch.optim.Adam`` (L2-style decay added to the gradient, as the official
        code's ``Adam(weight_decay=3e-4)``).
    """

    def __init__(self, labels: torch.Tensor, *, kind: str = "adam", lr: float = 0.01,
                 betas: tuple[float, float] = (0.5, 0.999), weight_decay: float = 0.0,
                 eps: float = 1e-8) -> None:
        self.labels = labels
        self.kind = kind
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.weight_decay = weight_decay
        self.eps = eps
        self.steps = 0
        if kind == "adam":
            self.exp_avg = torch.zeros_like(labels)
            self.exp_avg_sq = torch.zeros_like(labels)

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        """One update; ``grad`` may be overwritten (it is scratch once consumed)."""
        if self.weight_decay:
            grad = grad.add_(self.labels, alpha=self.weight_decay)
        if self.kind == "sgd":
            self.labels.sub_(grad, alpha=self.lr)
            return
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias1 = 1 - self.beta1 ** self.steps
        bias2 = 1 - self.beta2 ** self.steps
        denom = torch.div(self.exp_avg_sq, bias2, out=grad).sqrt_().add_(self.eps)  # reuse grad's memory
        self.labels.addcdiv_(self.exp_avg, denom, value=-self.lr / bias1)

    def reset_state(self) -> None:
        """Forget moments (after the rows were rearranged or overwritten)."""
        if self.kind == "adam":
            self.exp_avg.zero_()
            self.exp_avg_sq.zero_()
            self.steps = 0


def project_simplex(rows: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row (last dimension) onto the probability simplex.

    The sort-based algorithm of Held et al. / Duchi et al. (2008), vectorised over rows.
    """
    c = rows.shape[-1]
    sorted_rows, _ = torch.sort(rows, dim=-1, descending=True)
    cumsum = sorted_rows.cumsum(-1) - 1
    ks = torch.arange(1, c + 1, device=rows.device, dtype=rows.dtype)
    cond = sorted_rows - cumsum / ks > 0
    rho = cond.to(rows.dtype).cumsum(-1).argmax(-1, keepdim=True)  # last index where cond holds
    theta = cumsum.gather(-1, rho) / (rho + 1).to(rows.dtype)
    return (rows - theta).clamp_min(0)
