"""A naive re-implementation of the official DMLP loop: the speed baseline of the benchmark.

It follows the structure of the official script (``DMLP.py`` of the paper's repository)
step by step, written afresh:

per epoch, per IPC batch of ``batch_size`` consecutive training rows, per view:

1. ``W = (FᵀF)⁻¹ Fᵀ Y_b`` with an explicit ``torch.inverse`` of ``FᵀF``, recomputed at
   every step (nothing is cached between steps or epochs);
2. the trusted-set loss ``CE(F_v W, y_v) + Σ(F_v W − onehot(y_v))² + KL(π ‖ mean softmax(F_b W))``
   with a uniform ``π``;
3. autograd backward, and one ``torch.optim.Adam`` step (lr 0.01, betas (0.5, 0.999),
   weight decay 3e-4) on the *whole* label tensor, so decay and momentum move every row;
4. EAC: the linear head (``Linear`` followed by ``Softmax``, as in the script) takes
   ``batch_size // eac_batch_size`` Adam steps on consecutive mini-batches of the IPC batch,
   with cross-entropy to the argmax of the current labels (applied to the softmax outputs,
   as the script does), the confidence penalty (weight 0.4) and the class-balance term
   (weight 2200); its learning rate is 0.006, divided by ten after epoch 3;
5. the head's predictions on the batch, which the mixing step copies into the labels
   every ``eac_period`` epochs (with two views each view takes the other view's head).

Left out, because they are logging and not the algorithm: the per-sample Python loops
that measure label accuracy after every batch, and the test-set evaluation. The argmax of
the labels is vectorised. The script's mixing guard (``i % 20 == 0 and i != 0 and i == 99``)
never fires; here mixing happens at epochs 20, 40, 60, 80 (its evident intent), which costs
nothing measurable either way.

Not part of the package: used by ``benchmarks/purify_cifar10.py`` and
``tests/test_benchmarks.py`` only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["NaiveOutput", "naive_official", "naive_ipc_loss", "naive_ipc_grad"]

CONF_WEIGHT = 0.4
PRIOR_WEIGHT = 2200.0


@dataclass
class NaiveOutput:
    labels: np.ndarray  # (N,) argmax of the final label variables (mean over views)
    seconds: float  # wall time of the epoch loop
    epochs: int
    views: int
    batches_per_epoch: int
    head_steps_per_epoch: int


def naive_ipc_loss(batch_features: torch.Tensor, batch_labels: torch.Tensor, val_features: torch.Tensor,
                   val_labels: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """The official IPC loss of one batch, through an explicit inverse of ``FᵀF``.

    ``val_labels`` are class indices; the squared error is against their one-hot rows.
    """
    gram_inv = torch.inverse(batch_features.T @ batch_features)
    weights = (gram_inv @ batch_features.T) @ batch_labels
    val_pred = val_features @ weights
    onehot = F.one_hot(val_labels, batch_labels.shape[1]).to(val_pred.dtype)
    loss = F.cross_entropy(val_pred, val_labels) + (val_pred - onehot).square().sum()
    mean_p = torch.softmax(batch_features @ weights, dim=1).mean(0)
    return loss + (prior * torch.log(prior / mean_p)).sum()


def naive_ipc_grad(batch_features: torch.Tensor, batch_labels: torch.Tensor, val_features: torch.Tensor,
                   val_labels: torch.Tensor, prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, ∂loss/∂Y_b)`` of :func:`naive_ipc_loss` by autograd, for cross-checks."""
    labels = batch_labels.detach().clone().requires_grad_(True)
    loss = naive_ipc_loss(batch_features, labels, val_features, val_labels, prior)
    (grad,) = torch.autograd.grad(loss, labels)
    return loss.detach(), grad


class _View:
    def __init__(self, given: torch.Tensor, dim: int, num_classes: int) -> None:
        self.labels = F.one_hot(given, num_classes).float().requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.labels], lr=0.01, betas=(0.5, 0.999), weight_decay=3e-4)
        self.head = torch.nn.Sequential(torch.nn.Linear(dim, num_classes), torch.nn.Softmax(dim=1))
        self.head_optimizer = torch.optim.Adam(self.head.parameters(), lr=0.006, betas=(0.5, 0.999),
                                               weight_decay=3e-4)


def naive_official(
    features: np.ndarray | torch.Tensor,
    given_labels: np.ndarray | torch.Tensor,
    val_features: np.ndarray | torch.Tensor,
    val_labels: np.ndarray | torch.Tensor,
    *,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 7000,
    eac_batch_size: int = 500,
    eac_period: int = 20,
    views: int = 1,
    seed: int = 0,
) -> NaiveOutput:
    """Run the naive official loop on ``features`` (training rows, trusted rows excluded).

    With ``views=2`` both views use the same features, as the official script does (it
    loads ``trainfeatures.npy`` twice); they differ only in the heads' initial weights.
    Batches are ``len // batch_size`` consecutive slices (a remainder is never updated,
    as in the script; ``batch_size`` is capped at the number of rows).
    """
    torch.manual_seed(seed)
    feats = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    val_feats = torch.as_tensor(np.asarray(val_features), dtype=torch.float32)
    given = torch.as_tensor(np.asarray(given_labels), dtype=torch.long)
    val_y = torch.as_tensor(np.asarray(val_labels), dtype=torch.long)
    n, dim = feats.shape
    batch_size = min(batch_size, n)
    num_batches = n // batch_size
    head_steps = batch_size // eac_batch_size
    prior = torch.full((num_classes,), 1.0 / num_classes)
    state = [_View(given, dim, num_classes) for _ in range(views)]

    start = time.perf_counter()
    for epoch in range(epochs):
        head_lr = 0.006 * (0.1 if epoch > 3 else 1.0)
        for view in state:
            for group in view.head_optimizer.param_groups:
                group["lr"] = head_lr
        mix = eac_period > 0 and epoch > 0 and epoch % eac_period == 0
        for j in range(num_batches):
            lo, hi = j * batch_size, (j + 1) * batch_size
            batch = feats[lo:hi]
            predictions = []
            for view in state:
                # IPC: explicit inverse, autograd, Adam on the full label tensor.
                view.optimizer.zero_grad()
                loss = naive_ipc_loss(batch, view.labels[lo:hi], val_feats, val_y, prior)
                loss.backward()
                view.optimizer.step()
                # EAC: the head's mini-batch steps on the updated labels of this batch.
                targets = view.labels[lo:hi].detach().argmax(1)
                for p in range(head_steps):
                    a, b = p * eac_batch_size, (p + 1) * eac_batch_size
                    view.head_optimizer.zero_grad()
                    out = view.head(batch[a:b])  # softmax outputs, fed to CE as logits (as the script)
                    head_loss = F.cross_entropy(out, targets[a:b])
                    q = torch.softmax(out, dim=1)
                    head_loss = head_loss + CONF_WEIGHT * (q.log() * q).sum(1).mean()
                    mean_q = torch.softmax(q, dim=1).mean(0)
                    head_loss = head_loss + PRIOR_WEIGHT * (prior * torch.log(prior / mean_q)).sum()
                    head_loss.backward()
                    view.head_optimizer.step()
                predictions.append(view.head(batch).detach())
            if mix:
                with torch.no_grad():
                    for view, pred in zip(state, predictions[::-1]):
                        view.labels[lo:hi] = pred
    seconds = time.perf_counter() - start
    final = sum(view.labels.detach() for view in state) / views
    return NaiveOutput(labels=final.argmax(1).numpy(), seconds=seconds, epochs=epochs, views=views,
                       batches_per_epoch=num_batches, head_steps_per_epoch=num_batches * head_steps)
