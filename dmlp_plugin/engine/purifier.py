"""The purification loop: IPC every epoch, EAC mixing every T epochs.

Inputs are tensors already validated and placed on one device by the API layer
(:mod:`dmlp_plugin.purify`). Metrics stay on the device and are copied out once at the
end. The IPC steps, the linear head's steps and its mixing, and the least-squares head's
mixing rounds read no tensor value on the host, so the epochs of paper mode and of the
default run on CUDA without host-device synchronisation. What does synchronise inside the
loop (counted in ``tests/test_engine_hygiene.py``):

- an epoch that re-draws the partition (``reshuffle_every``): the partition is drawn on
  the host, and re-factoring checks the batch sizes and the Cholesky factors;
- ``on_epoch``, when it reads the metrics.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import PurifyConfig
from ..device import resolve_precision
from .eac import EACHead, slice_schedule
from .ipc import IPCBatches, IPCLossWeights, factor, ipc_loss_and_grad, partition
from .ipc_groups import BatchRows, GroupedBatches, grouped_loss_and_grad
from .label_update import LabelOptimizer, project_simplex
from .logistic_head import fit_forward_logistic_path
from .mlp_head import fit_forward_mlp
from .ls_head import LeastSquaresHead, fit_temperature, trusted_folds
from .posterior import (fit_posterior_offsets, fit_transition_weight, heldout_log_transition, offsets_identified,
                        refine_transition, transition_from_pairs, transition_from_predictions)
from .rows import FeatureRows
from .rows import scores as row_scores
from .softmax import softmax_, softmax_rows
from .subnormals import flushing_subnormals

__all__ = ["purify_tensors", "EngineOutput", "METRICS", "TIMINGS", "epoch_record"]

#: Columns of the per-epoch metrics, in order. ``changed``: the fraction of rows whose
#: current label differs from the given one.
METRICS = ("ipc_loss", "eac_loss", "label_accuracy", "eac_mixed", "trusted_nll", "changed")

#: Keys of :attr:`EngineOutput.timings`, in order: seconds spent partitioning and
#: factoring (the IPC batches and the least-squares head) before the first epoch, in
#: the epoch loop, and after it (the logistic candidate and the output rows).
TIMINGS = ("factor", "epochs", "finish")


@dataclass
class EngineOutput:
    soft_labels: torch.Tensor  # (N, C) rows on the simplex
    history: list[dict[str, float]]
    timings: dict[str, float]  # seconds, keyed by TIMINGS
    transition: torch.Tensor | None = None
    #: Which candidate the labels come from ("round k" or "logistic"), when one was chosen.
    selected: str | None = None
    #: Cross-fitted trusted-set log-loss of every candidate considered.
    candidate_nll: dict[str, float] | None = None
    #: The fitted transition weight ``b`` of the selected candidate's posterior (mean over
    #: views), when it was fitted (``fit_transition_weight``).
    transition_weight: float | None = None


# None: the features' own dtype (float32 from the API; tests also run float64).
_STORAGE = {"float32": None, "bfloat16": torch.bfloat16}


class _View:
    """One feature view: its label variables, optimizer, factored batches and head."""

    def __init__(self, features: torch.Tensor | FeatureRows, val_features: torch.Tensor, init: torch.Tensor,
                 index: torch.Tensor, val_onehot: torch.Tensor, config: PurifyConfig,
                 prior: torch.Tensor, generator: torch.Generator,
                 folds: list[torch.Tensor], spill_dir: str | None = None) -> None:
        self.features = features
        self.spill_dir = spill_dir
        self.val_features = val_features
        self.config = config
        self.place(index, init)
        self.linear_head = self.ls_head = None
        if config.eac and config.eac_head == "linear":
            self.linear_head = EACHead(
                features.shape[1], init.shape[1], prior=prior, lr=config.eac_lr,
                betas=(0.5, 0.999), weight_decay=config.eac_weight_decay,
                conf_weight=config.eac_conf_weight, balance_weight=config.eac_balance_weight,
                generator=generator, device=features.device)
        elif config.eac:
            # Per-fold label chains keep the trusted log-loss honest across rounds; IPC
            # moves the labels by the whole trusted set, which the chains cannot mirror.
            self.ls_head = LeastSquaresHead(features, val_features, val_onehot,
                                            trusted_weight=config.trusted_weight,
                                            ridge=config.ridge, fold_masks=folds,
                                            chain_labels=None if config.ipc else init)

    def place(self, index: torch.Tensor, flat_labels: torch.Tensor) -> None:
        """(Re-)partition and factor; Adam moments restart because rows moved.

        Without IPC nothing is factored and the labels stay in the original order.
        """
        cfg = self.config
        if not cfg.ipc:
            self.batches = None
            self.labels = flat_labels.clone()
        else:
            if isinstance(self.features, FeatureRows):
                # Not held whole: factored and stepped a group of batches at a time (ipc_groups).
                self.batches: IPCBatches | GroupedBatches | None = GroupedBatches(
                    self.features, index, ridge=cfg.ridge, storage=_STORAGE[cfg.precision] or self.features.dtype,
                    group_batches=self.features.chunk_rows // index.shape[1], spill_dir=self.spill_dir)
            else:
                self.batches = factor(self.features, index, ridge=cfg.ridge, storage=_STORAGE[cfg.precision])
            self.labels = self.batches.gather(flat_labels)  # (B, b, C), the optimised variables
            self.optimizer = LabelOptimizer(self.labels, kind=cfg.label_optimizer, lr=cfg.label_lr,
                                            betas=cfg.label_betas, weight_decay=cfg.label_weight_decay)
        if cfg.eac and cfg.eac_head == "linear":
            self._lay_out_head_rows(len(flat_labels))

    def _lay_out_head_rows(self, n: int) -> None:
        """The rows the linear head steps through, in slices, as the official script:
        each IPC batch in turn (the training set in its order without IPC)."""
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
        if self.batches is None:
            return self.labels
        return self.batches.scatter(self.labels, self.features.shape[0])

    def laid_out(self, flat: torch.Tensor) -> torch.Tensor:
        """A per-sample tensor in the layout of ``self.labels``."""
        return flat if self.batches is None else self.batches.gather(flat)

    def head_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Head scores on the training rows and honest scores on the trusted rows."""
        if self.linear_head is not None:
            # The linear head never sees the trusted rows, so its scores there are held out.
            head = self.linear_head
            scores = (row_scores(self.features, head.weight.T, head.bias) if isinstance(self.features, FeatureRows)
                      else head.logits(self.features))
            return scores.detach(), head.logits(self.val_features).detach()
        flat = self.flat_labels()
        weights = self.ls_head.fit(flat)
        return self.ls_head.scores(weights), self.ls_head.crossfit_val_scores(flat)


def _flushing_subnormals(fn: Callable[..., EngineOutput]) -> Callable[..., EngineOutput]:
    @functools.wraps(fn)
    def run(features: torch.Tensor, *args, **kwargs) -> EngineOutput:
        with flushing_subnormals(features.device):
            return fn(features, *args, **kwargs)
    return run


@_flushing_subnormals
def purify_tensors(
    features: torch.Tensor,
    init_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    *,
    config: PurifyConfig,
    generator: torch.Generator,
    features_view2: torch.Tensor | None = None,
    val_features_view2: torch.Tensor | None = None,
    val_given: torch.Tensor | None = None,
    clean_labels: torch.Tensor | None = None,
    on_epoch: Callable[[int, torch.Tensor], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    spill_dir: str | None = None,
) -> EngineOutput:
    """Run DMLP on prepared tensors.

    Parameters
    ----------
    features : (N, d) float tensor, or :class:`~.rows.FeatureRows`
        Training features (trusted samples excluded). FeatureRows read in chunks, or shared
        between processes, are read that way by every part of the engine: the heads a chunk
        of rows at a time, IPC a group of batches at a time (:mod:`.ipc_groups`).
    init_labels : (N, C) float
        Initial label distributions: one-hot given labels.
    val_features : (V, d) float
    val_labels : (V,) long
        Clean labels of the trusted set.
    config : PurifyConfig
    generator : torch.Generator (CPU)
        Drives every random choice, for determinism.
    features_view2, val_features_view2 : optional
        A second feature view; each view's labels are then mixed with the *other* view's
        head (the official cross-update) and the result is the mean of both views.
    val_given : (V,) long, optional
        Given (noisy) labels of the trusted samples, to count the noise transition;
        without them it is estimated from the head's predictions.
    clean_labels : (N,) long, optional
        Only for the per-epoch label accuracy in the history.
    on_epoch : callable, optional
        ``on_epoch(epoch, metrics)`` after each epoch, ``metrics`` still on the device
        (columns :data:`METRICS`): reading them synchronises the device.
    on_stage : callable, optional
        ``on_stage(name)`` when the epochs are done and the final stage starts (choosing
        among the candidates, fitting the logistic one), so a progress bar can say so.
    spill_dir : str, optional
        With IPC on FeatureRows read in chunks: keep the batches' solvers in a temporary
        file in this folder rather than in RAM (:mod:`.ipc_groups`).

    On CPU, subnormal floats are flushed to zero while it runs: softmax probabilities of
    confident rows underflow into that range, and arithmetic on them is an order of
    magnitude slower (it made the candidate fits 3× slower on CIFAR-10). Values below
    1e-38 change no label.
    """
    t_start = time.perf_counter()
    # Features read in chunks (or shared between processes) stay FeatureRows, read by every
    # part of the engine a chunk or a group of batches at a time; otherwise one tensor.
    features = _tensor_unless_streamed(features)
    if features_view2 is not None:
        features_view2 = _tensor_unless_streamed(features_view2)
    device = features.device
    n, num_classes = init_labels.shape
    given = init_labels.argmax(1)
    val_onehot = torch.nn.functional.one_hot(val_labels, num_classes).to(features.dtype)
    if config.prior == "trusted":
        prior = val_onehot.mean(0) + 1e-3
        prior = prior / prior.sum()
    else:
        prior = torch.full((num_classes,), 1.0 / num_classes, device=device, dtype=features.dtype)
    weights = IPCLossWeights(ce=config.ce_weight, mse=config.mse_weight, prior=config.prior_weight)
    transition = None
    if val_given is not None:
        transition = transition_from_pairs(val_labels, val_given, num_classes).to(features.dtype)

    def new_partition() -> torch.Tensor:
        return partition(n, config.batch_size, generator=generator, device=device)

    index = new_partition()
    view_feats = [(features, val_features)]
    if features_view2 is not None:
        view_feats.append((features_view2, val_features_view2))
    folds = trusted_folds(val_labels.shape[0], 5, generator, device)  # shared by the views
    # Scoring a trusted row under T counted from that very row would flatter every
    # candidate's log-loss; each row is scored under T counted without its fold.
    val_log_t = None if val_given is None else heldout_log_transition(val_labels, val_given, folds, num_classes)
    views = [_View(f, vf, init_labels, index, val_onehot, config, prior, generator, folds, spill_dir)
             for f, vf in view_feats]
    t_factor = _clock(device)

    epochs = config.epochs
    metrics = torch.full((epochs, len(METRICS)), float("nan"), device=device)
    metrics[:, :2] = 0
    metrics[:, 3] = 0
    best_nll = torch.full((), float("inf"), device=device)
    best_soft = None
    best_round = torch.zeros((), dtype=torch.long, device=device)
    mixes = 0
    for epoch in range(epochs):
        if config.ipc and config.reshuffle_every and epoch and epoch % config.reshuffle_every == 0:
            index = new_partition()
            for view in views:
                view.place(index, view.flat_labels())
        if config.ipc:
            for view in views:
                step = grouped_loss_and_grad if isinstance(view.batches, GroupedBatches) else ipc_loss_and_grad
                loss, grad = step(view.labels, view.batches, view.val_features, val_onehot, prior, weights)
                view.optimizer.step(grad)
                if config.project_simplex:
                    view.labels.copy_(project_simplex(view.labels) * view.batches.mask)
                metrics[epoch, 0] += loss.mean() / len(views)
        if config.eac and config.eac_head == "linear":
            lr = config.eac_lr
            if config.eac_lr_decay_epoch and epoch > config.eac_lr_decay_epoch:
                lr *= 0.1
            for view in views:
                view.linear_head.set_lr(lr)
                targets = view.labels.flatten(0, -2).argmax(1)  # in the layout of head_rows
                loss = view.linear_head.train_slices(view.head_rows, targets,
                                                     view.next_head_slices(config.eac_steps))
                metrics[epoch, 1] += loss / len(views)
        due = (epoch + 1) % config.eac_period == 0 or (config.eac_final and epoch == epochs - 1)
        if config.eac and due:
            targets, nll, transition = _mix_targets(views, config, given, val_labels, val_given,
                                                    transition, val_log_t)
            _mix(views, targets, config.eac_eta)
            mixes += 1
            metrics[epoch, 3] = 1.0
            metrics[epoch, 4] = nll
            if config.eac_target == "posterior":
                soft_now = sum(target for target, _ in targets) / len(targets)
                better = nll < best_nll if config.select_round else torch.ones((), dtype=torch.bool, device=device)
                best_soft = soft_now if best_soft is None else torch.where(better, soft_now, best_soft)
                best_round = torch.where(better, torch.full_like(best_round, mixes), best_round)
                best_nll = torch.where(better, nll, best_nll)
        current = sum(view.flat_labels() for view in views).argmax(1)
        metrics[epoch, 5] = (current != given).float().mean()
        if clean_labels is not None:
            metrics[epoch, 2] = (current == clean_labels).float().mean()
        if on_epoch is not None:
            on_epoch(epoch, metrics[epoch])
    rows_out = metrics.cpu().tolist()  # waits for the queued epochs, so they are timed whole
    t_epochs = time.perf_counter()

    selected = candidate_nll = transition_weight = None
    if on_stage is not None:
        fits = [name for name, on in (("logistic", config.logistic_candidate), ("network", config.mlp_candidate))
                if on and best_soft is not None and config.select_round]
        on_stage("choosing the labels" + (f" (fitting the {' and '.join(fits)} candidate{'s' * (len(fits) > 1)})"
                                          if fits else ""))
    if best_soft is not None:
        soft = best_soft
        nlls = [row[4] for row in rows_out if row[3]]
        candidate_nll = {f"round {k + 1}": nll for k, nll in enumerate(nlls)}
        selected = f"round {int(best_round)}"
        fitted: list[_Candidate] = []
        if config.select_round and config.logistic_candidate:
            fitted += _logistic_candidate(views, config, given, val_labels, val_given, transition, folds,
                                          val_log_t)
        if config.select_round and config.mlp_candidate and _held_whole(views) and n >= 2 * config.mlp_folds:
            best_logistic = min(fitted, key=lambda c: float(c.nll)) if fitted else None
            fitted += _mlp_candidates(views, config, given, val_labels, val_given, transition, val_log_t,
                                      best_logistic, generator)
        for candidate in fitted:
            candidate_nll[candidate.name] = float(candidate.nll)
            if candidate.nll < best_nll:
                soft, selected, best_nll = candidate.posterior, candidate.name, candidate.nll
                transition_weight = candidate.transition_weight
    else:
        soft = sum(view.flat_labels() for view in views) / len(views)
    soft = _to_simplex(soft)
    t_end = _clock(device)

    history = [epoch_record(epoch, row) for epoch, row in enumerate(rows_out)]
    timings = dict(zip(TIMINGS, (t_factor - t_start, t_epochs - t_factor, t_end - t_epochs)))
    return EngineOutput(soft_labels=soft, history=history, timings=timings, transition=transition,
                        selected=selected, candidate_nll=candidate_nll,
                        transition_weight=None if transition_weight is None else float(transition_weight))


def _tensor_unless_streamed(features: torch.Tensor | FeatureRows) -> torch.Tensor | FeatureRows:
    if isinstance(features, FeatureRows) and not features.streamed:
        return features.whole()
    return features


def _clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has done the work queued so far.

    CUDA runs ahead of the host: without waiting, a stage would be charged for the
    launches only and the next one for the rest. Never called inside the epoch loop.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def epoch_record(epoch: int, row: list[float]) -> dict[str, float]:
    """The history entry of 0-based ``epoch`` from its metrics row (NaN: not measured)."""
    record: dict[str, float] = {"epoch": epoch + 1}
    for name, value in zip(METRICS, row):
        if value == value:
            record[name] = bool(value) if name == "eac_mixed" else value
    return record


@torch.no_grad()
def _mix_targets(views: list[_View], config: PurifyConfig, given: torch.Tensor,
                 val_labels: torch.Tensor, val_given: torch.Tensor | None,
                 transition: torch.Tensor | None, val_log_t: torch.Tensor | None):
    """What each view mixes in, the trusted-set log-loss of that target, and ``T``.

    ``val_log_t`` (V, C): ``log T[:, ỹ_v]`` for each trusted row under ``T`` counted
    without that row's fold, for scoring (None without the trusted rows' given labels).

    A target is ``(labels, chain_targets)``: the labels' target, and the targets of the
    least-squares head's fold chains ``(K, C, N)`` (None without chains), made the same
    way from each chain's own scores.
    """
    targets, nlls = [], []
    for view in views:
        scores, val_scores = view.head_scores()
        chain_scores = view.ls_head.chain_scores if view.ls_head is not None else None
        if config.eac_target == "head" and view.linear_head is not None:
            # The paper: the head's own softmax, uncalibrated.
            targets.append((softmax_rows(scores), None))
            nlls.append(torch.nn.functional.cross_entropy(val_scores, val_labels))
            continue
        prior: torch.Tensor | float = 0.0
        val_prior: torch.Tensor | float = 0.0
        if config.eac_target == "posterior":
            if transition is None:
                scale, _ = fit_temperature(val_scores, val_labels)
                transition = transition_from_predictions(softmax_rows(scale * scores), given,
                                                         scores.shape[1]).to(scores.dtype)
            log_t = transition.clamp_min(1e-12).log().T  # row ỹ: log T[:, ỹ]
            prior = log_t[given]
            if val_log_t is not None:  # else no given labels: calibrate the head alone
                val_prior = val_log_t
        # The log-loss is taken under the counted T (held out per fold), the same for every
        # round and candidate.
        scale, nll = fit_temperature(val_scores, val_labels, val_prior)
        if config.eac_target == "posterior" and config.transition_em_steps:
            log_r = _refined_log_transition(scores, val_scores, given, val_labels, val_given,
                                            transition, config.transition_em_steps)
            prior = log_r[given]
            scale, _ = fit_temperature(val_scores, val_labels, log_r[val_given] if val_given is not None else 0.0)
        chain_targets = None
        if chain_scores is not None:
            chain_prior = prior.T.unsqueeze(0) if isinstance(prior, torch.Tensor) else prior
            chain_targets = softmax_(scale * chain_scores + chain_prior, 1)
        targets.append((softmax_rows(scale * scores + prior), chain_targets))
        nlls.append(nll)
    return targets, sum(nlls) / len(nlls), transition


def _logistic_candidate(views: list[_View], config: PurifyConfig, given: torch.Tensor,
                        val_labels: torch.Tensor, val_given: torch.Tensor | None,
                        transition: torch.Tensor, folds: list[torch.Tensor],
                        val_log_t: torch.Tensor | None) -> list[_Candidate]:
    """The forward-corrected logistic head at each weight decay of the config."""
    decays = config.logistic_weight_decays
    per_decay: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in decays]
    for view in views:
        path_scores, path_val_scores = fit_forward_logistic_path(
            view.features, given, transition, view.val_features, val_labels, folds,
            trusted_weight=config.logistic_trusted_weight, weight_decays=decays,
            max_iter=config.logistic_max_iter)
        for g in range(len(decays)):
            per_decay[g].append((path_scores[g], path_val_scores[g]))
    names = ["logistic"] if len(decays) == 1 else [f"logistic (weight decay {d:g})" for d in decays]
    return [_candidate(name, scores, config, given, val_labels, val_given, transition, val_log_t)
            for name, scores in zip(names, per_decay)]


def _mlp_candidates(views: list[_View], config: PurifyConfig, given: torch.Tensor,
                    val_labels: torch.Tensor, val_given: torch.Tensor | None,
                    transition: torch.Tensor, val_log_t: torch.Tensor | None,
                    logistic: _Candidate | None, generator: torch.Generator) -> list[_Candidate]:
    """The cross-fitted two-layer network (``mlp``), and its log-probabilities averaged with
    the best logistic candidate's (``mlp + logistic``)."""
    per_view = []
    for view in views:
        scores, val_scores = fit_forward_mlp(
            view.features, given, transition, view.val_features, generator=generator,
            folds=config.mlp_folds, hidden=config.mlp_hidden, layers=config.mlp_layers,
            epochs=config.mlp_epochs, repeats=config.mlp_repeats,
            precision=getattr(torch, resolve_precision(config.mlp_precision, view.features.device)))
        per_view.append((scores, val_scores))
    out = [_candidate("mlp", per_view, config, given, val_labels, val_given, transition, val_log_t)]
    if logistic is not None:
        # Both halves are held out for every trusted row (the logistic's cross-fitted, the
        # network's never trained on), so the mixture is scored as fairly as each.
        mixed = [(0.5 * (mlp_s + torch.log_softmax(log_s, 1)), 0.5 * (mlp_v + torch.log_softmax(log_v, 1)))
                 for (mlp_s, mlp_v), (log_s, log_v) in zip(per_view, logistic.scores)]
        out.append(_candidate("mlp + logistic", mixed, config, given, val_labels, val_given, transition,
                              val_log_t))
    return out


@dataclass
class _Candidate:
    """A classifier fitted after the epochs: its posterior, its held-out trusted log-loss
    (under the held-out counted T, as the rounds'), and its scores per view."""

    name: str
    posterior: torch.Tensor
    nll: torch.Tensor
    scores: list[tuple[torch.Tensor, torch.Tensor]]
    transition_weight: torch.Tensor | None = None


def _candidate(name: str, scores: list[tuple[torch.Tensor, torch.Tensor]], config: PurifyConfig,
               given: torch.Tensor, val_labels: torch.Tensor, val_given: torch.Tensor | None,
               transition: torch.Tensor, val_log_t: torch.Tensor | None) -> _Candidate:
    """Calibrate each view's ``(scores, val_scores)``, form the posterior (mean over views)."""
    log_t = transition.clamp_min(1e-12).log().T
    val_prior = val_log_t if val_log_t is not None else 0.0
    posteriors, nlls, weights = [], [], []
    for view_scores, val_scores in scores:
        scale, nll = fit_temperature(val_scores, val_labels, val_prior)
        nlls.append(nll)
        used_log_t = log_t
        if config.transition_em_steps:
            used_log_t = _refined_log_transition(view_scores, val_scores, given, val_labels, val_given,
                                                 transition, config.transition_em_steps)
        prior = used_log_t[given]
        if config.fit_transition_weight and val_given is not None:
            # Fitted under the T the training rows use: under the coarse held-out count, b
            # would also shrink that count's own noise. The log-loss that selects the
            # candidate stays the one above, taken alike for every candidate.
            if config.fit_posterior_offsets and offsets_identified(val_labels, view_scores.shape[1]):
                fit = fit_posterior_offsets(val_scores, val_labels, used_log_t[val_given], val_given)
                scale, weight, prior = fit.scale, fit.weight, fit.log_prior(prior, given)
            else:
                scale, weight, _ = fit_transition_weight(val_scores, val_labels, used_log_t[val_given])
                prior = weight * prior
            weights.append(weight)
        elif config.transition_em_steps:
            scale, _ = fit_temperature(val_scores, val_labels,
                                       used_log_t[val_given] if val_given is not None else 0.0)
        posteriors.append(softmax_rows(scale * view_scores + prior))
    return _Candidate(name, sum(posteriors) / len(posteriors), sum(nlls) / len(nlls), scores,
                      sum(weights) / len(weights) if weights else None)


def _held_whole(views: list[_View]) -> bool:
    """Whether every view's training features are one tensor: the network's mini-batches
    read rows at random, which features read in chunks or split between processes do not
    allow (there the candidate is left out)."""
    return all(isinstance(view.features, torch.Tensor) for view in views)


def _refined_log_transition(scores: torch.Tensor, val_scores: torch.Tensor, given: torch.Tensor,
                            val_labels: torch.Tensor, val_given: torch.Tensor | None,
                            transition: torch.Tensor, steps: int) -> torch.Tensor:
    """``log T[:, ỹ]`` (C given labels, C) under the EM-refined ``T``; the caller fits the
    temperature of ``scores`` under it."""
    refined = refine_transition(scores, given, val_scores, val_labels, val_given, transition,
                                steps=steps)
    return refined.clamp_min(1e-12).log().T


@torch.no_grad()
def _mix(views: list[_View], targets: list[tuple[torch.Tensor, torch.Tensor | None]],
         eta: float) -> None:
    """``Y ← (1 − η)·Y + η·target``; with two views each takes the other view's target."""
    if len(views) == 2:
        targets = targets[::-1]
    for view, (target, chain_targets) in zip(views, targets):
        view.labels.mul_(1 - eta).add_(view.laid_out(target), alpha=eta)
        if chain_targets is not None:
            view.ls_head.advance_chains(chain_targets, eta)


def _to_simplex(soft: torch.Tensor) -> torch.Tensor:
    """Rows onto the simplex for output: clip negatives, renormalise (uniform if all zero)."""
    soft = soft.clamp_min(0)
    total = soft.sum(1, keepdim=True)
    uniform = torch.full_like(soft, 1.0 / soft.shape[1])
    return torch.where(total > 1e-12, soft / total.clamp_min(1e-12), uniform)
