"""The paper's loop (``PaperConfig``): every epoch an IPC step on the labels and the linear
head's steps; every ``T`` epochs the head's predictions mixed into the labels.

The epochs read no tensor value on the host, so on CUDA they run without host-device
synchronisation; what does synchronise (counted in ``tests/test_engine_hygiene.py``): an
epoch that re-draws the partition (``reshuffle_every``), and ``on_epoch`` when it reads
the metrics.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..config import PaperConfig
from .eac import EACHead, slice_schedule
from .ipc import IPCBatches, IPCLossWeights, factor, ipc_loss_and_grad, partition
from .ipc_groups import BatchRows, GroupedBatches, grouped_loss_and_grad
from .label_update import LabelOptimizer, project_simplex
from .output import EngineOutput, to_simplex
from .problem import Problem, clock
from .rows import FeatureRows
from .rows import scores as row_scores
from .softmax import softmax_rows

__all__ = ["run_paper", "METRICS", "epoch_record"]

#: Columns of the per-epoch metrics, in order. ``changed``: the fraction of rows whose
#: current label differs from the given one; ``trusted_nll``: the head's log-loss on the
#: trusted rows (which it never trains on) at a mixing epoch.
METRICS = ("ipc_loss", "eac_loss", "label_accuracy", "eac_mixed", "trusted_nll", "changed")

# None: the features' own dtype (float32 from the API; tests also run float64).
_STORAGE = {"float32": None, "bfloat16": torch.bfloat16}


class _View:
    """One feature view: its label variables, their optimizer, the factored batches, the head."""

    def __init__(self, features: torch.Tensor | FeatureRows, val_features: torch.Tensor, init: torch.Tensor,
                 index: torch.Tensor, config: PaperConfig, prior: torch.Tensor, generator: torch.Generator,
                 spill_dir: str | None) -> None:
        self.features, self.val_features, self.config, self.spill_dir = features, val_features, config, spill_dir
        self.place(index, init)
        self.head = None
        if config.eac:
            self.head = EACHead(features.shape[1], init.shape[1], prior=prior, lr=config.eac_lr, betas=(0.5, 0.999),
                                weight_decay=config.eac_weight_decay, conf_weight=config.eac_conf_weight,
                                balance_weight=config.eac_balance_weight, generator=generator,
                                device=features.device)

    def place(self, index: torch.Tensor, flat_labels: torch.Tensor) -> None:
        """(Re-)partition and factor; Adam's moments restart because rows moved. Without
        IPC nothing is factored and the labels stay in the original order."""
        cfg = self.config
        self.batches: IPCBatches | GroupedBatches | None = None
        if not cfg.ipc:
            self.labels = flat_labels.clone()
        else:
            if isinstance(self.features, FeatureRows):
                # Not held whole: factored and stepped a group of batches at a time (ipc_groups).
                self.batches = GroupedBatches(
                    self.features, index, ridge=cfg.ridge, storage=_STORAGE[cfg.precision] or self.features.dtype,
                    group_batches=self.features.chunk_rows // index.shape[1], spill_dir=self.spill_dir)
            else:
                self.batches = factor(self.features, index, ridge=cfg.ridge, storage=_STORAGE[cfg.precision])
            self.labels = self.batches.gather(flat_labels)  # (B, b, C), the optimised variables
            self.optimizer = LabelOptimizer(self.labels, kind=cfg.label_optimizer, lr=cfg.label_lr,
                                            betas=cfg.label_betas, weight_decay=cfg.label_weight_decay)
        if cfg.eac:
            self._lay_out_head_rows(len(flat_labels))

    def _lay_out_head_rows(self, n: int) -> None:
        """The rows the head steps through, in slices, as the official script: each IPC
        batch in turn (the training set in its order without IPC)."""
        rows = self.config.eac_batch_size
        self.head_cursor = 0
        if self.batches is None:
            # Rows read in chunks are stepped through in float32 whatever the precision.
            self.head_rows = (self.features if isinstance(self.features, FeatureRows)
                              else self.features.to(_STORAGE[self.config.precision] or self.features.dtype))
            self.head_slices = slice_schedule([n], n, rows)
            return
        self.head_rows = (BatchRows(self.batches) if isinstance(self.batches, GroupedBatches)
                          else self.batches.features.flatten(0, 1))
        sizes = [int(c) for c in self.batches.counts.view(-1).tolist()]
        self.head_slices = slice_schedule(sizes, self.batches.index.shape[1], rows)

    def next_head_slices(self, steps: int) -> list[tuple[int, int]]:
        """The next ``steps`` slices of the head's schedule, cycling through it."""
        count = len(self.head_slices)
        out = [self.head_slices[(self.head_cursor + i) % count] for i in range(steps)]
        self.head_cursor = (self.head_cursor + steps) % count
        return out

    def flat_labels(self) -> torch.Tensor:
        return self.labels if self.batches is None else self.batches.scatter(self.labels, self.features.shape[0])

    def laid_out(self, flat: torch.Tensor) -> torch.Tensor:
        """A per-row tensor in the layout of ``self.labels``."""
        return flat if self.batches is None else self.batches.gather(flat)

    def head_predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``C(F)`` on the training rows and the head's logits on the trusted rows."""
        head = self.head
        scores = (row_scores(self.features, head.weight.T, head.bias) if isinstance(self.features, FeatureRows)
                  else head.logits(self.features))
        return softmax_rows(scores.detach()), head.logits(self.val_features).detach()


def run_paper(problem: Problem, config: PaperConfig, generator: torch.Generator, *,
              on_epoch: Callable[[int, torch.Tensor], None] | None = None,
              spill_dir: str | None = None) -> EngineOutput:
    """Run the paper's loop on a prepared :class:`~.problem.Problem`.

    ``on_epoch(epoch, metrics)`` after each epoch, ``metrics`` still on the device (columns
    :data:`METRICS`); reading them synchronises the device. ``spill_dir``: with IPC on
    features read in chunks, keep the batches' solvers in a temporary file there.
    """
    t_start = time.perf_counter()
    p, device, n = problem, problem.device, problem.num_rows
    prior = _class_prior(p, config)
    weights = IPCLossWeights(ce=config.ce_weight, mse=config.mse_weight, prior=config.prior_weight)
    index = partition(n, config.batch_size, generator=generator, device=device)
    views = [_View(f, vf, p.init, index, config, prior, generator, spill_dir) for f, vf in p.views]
    t_factor = clock(device)

    metrics = torch.full((config.epochs, len(METRICS)), float("nan"), device=device)
    metrics[:, [0, 1, 3]] = 0
    for epoch in range(config.epochs):
        if config.ipc and config.reshuffle_every and epoch and epoch % config.reshuffle_every == 0:
            index = partition(n, config.batch_size, generator=generator, device=device)
            for view in views:
                view.place(index, view.flat_labels())
        if config.ipc:
            metrics[epoch, 0] = _ipc_step(views, p, prior, weights, config)
        if config.eac:
            metrics[epoch, 1] = _head_steps(views, config, epoch)
            if (epoch + 1) % config.eac_period == 0:
                metrics[epoch, 4] = _mix(views, p.val_labels, config.eac_eta)
                metrics[epoch, 3] = 1.0
        current = sum(view.flat_labels() for view in views).argmax(1)
        metrics[epoch, 5] = (current != p.given).float().mean()
        if p.clean is not None:
            metrics[epoch, 2] = (current == p.clean).float().mean()
        if on_epoch is not None:
            on_epoch(epoch, metrics[epoch])
    rows = metrics.cpu().tolist()  # waits for the queued epochs, so they are timed whole
    t_epochs = time.perf_counter()
    soft = to_simplex(sum(view.flat_labels() for view in views) / len(views))
    t_end = clock(device)
    return EngineOutput(soft_labels=soft, history=[epoch_record(e, row) for e, row in enumerate(rows)],
                        timings={"factor": t_factor - t_start, "epochs": t_epochs - t_factor,
                                 "finish": t_end - t_epochs},
                        transition=p.counted_transition())


def epoch_record(epoch: int, row: list[float]) -> dict[str, float]:
    """The history entry of 0-based ``epoch`` from its metrics row (NaN: not measured)."""
    record: dict[str, float] = {"epoch": epoch + 1}
    for name, value in zip(METRICS, row):
        if value == value:
            record[name] = bool(value) if name == "eac_mixed" else value
    return record


def _class_prior(p: Problem, config: PaperConfig) -> torch.Tensor:
    """The class prior of IPC's KL term and the head's balance term."""
    if config.prior == "trusted":
        prior = p.val_onehot.mean(0) + 1e-3
        return prior / prior.sum()
    return torch.full((p.num_classes,), 1.0 / p.num_classes, device=p.device, dtype=p.dtype)


def _ipc_step(views: list[_View], p: Problem, prior: torch.Tensor, weights: IPCLossWeights,
              config: PaperConfig) -> torch.Tensor:
    """One IPC step of every view's labels; the mean loss over views (on the device)."""
    losses = []
    for view in views:
        step = grouped_loss_and_grad if isinstance(view.batches, GroupedBatches) else ipc_loss_and_grad
        loss, grad = step(view.labels, view.batches, view.val_features, p.val_onehot, prior, weights)
        view.optimizer.step(grad)
        if config.project_simplex:
            view.labels.copy_(project_simplex(view.labels) * view.batches.mask)
        losses.append(loss.mean() / len(views))
    return sum(losses)


def _head_steps(views: list[_View], config: PaperConfig, epoch: int) -> torch.Tensor:
    """One epoch of the head's steps on each view's current hard labels; the mean loss."""
    lr = config.eac_lr * (0.1 if config.eac_lr_decay_epoch and epoch > config.eac_lr_decay_epoch else 1.0)
    losses = []
    for view in views:
        view.head.set_lr(lr)
        targets = view.labels.flatten(0, -2).argmax(1)  # in the layout of head_rows
        losses.append(view.head.train_slices(view.head_rows, targets, view.next_head_slices(config.eac_steps))
                      / len(views))
    return sum(losses)


@torch.no_grad()
def _mix(views: list[_View], val_labels: torch.Tensor, eta: float) -> torch.Tensor:
    """``Y ← (1 − η)·Y + η·C(F)``; with two views each takes the other view's head (the
    official cross-update). Returns the heads' mean trusted log-loss."""
    predictions = [view.head_predictions() for view in views]
    nll = sum(torch.nn.functional.cross_entropy(val, val_labels) for _, val in predictions) / len(views)
    targets = [target for target, _ in predictions]
    if len(views) == 2:
        targets = targets[::-1]
    for view, target in zip(views, targets):
        view.labels.mul_(1 - eta).add_(view.laid_out(target), alpha=eta)
    return nll
