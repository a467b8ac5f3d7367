"""The default pipeline's candidate families fitted on the *given* labels: the logistic
head on a regularisation path and the network (with its mixture with the best logistic).

Every family has one interface, as :class:`~.rounds.LeastSquaresRounds`: ``count(problem)``
candidates, and ``fit(problem, calibrator)`` yielding each one calibrated. A family fits
its classifier's scores on the training rows and its held-out scores on the trusted rows
(cross-fitted: no row is scored by a fit that saw it), and hands both to the one
calibrator (``engine/calibrate.py``).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..config import PurifyConfig
from ..device import resolve_precision
from .calibrate import Calibrated, Calibrator, Scores
from .logistic_head import fit_forward_logistic_path
from .mlp_head import fit_forward_mlp
from .problem import Problem

__all__ = ["GivenLabels", "LogisticPath", "Network", "network_fits"]


class GivenLabels:
    """The given labels themselves as a candidate: a classifier that knows nothing of the
    features (every score 0), so its posterior is ``p(y | ỹ)`` through ``T`` alone and its
    selection score the trusted rows' log-loss of keeping their given labels. It is the
    floor: where no classifier of the features beats it on held-out log-loss (weak features,
    a small trusted set, little noise), the labels stay as given."""

    family = "given labels"

    def count(self, problem: Problem) -> int:
        return 1

    def fit(self, problem: Problem, calibrator: Calibrator,
            on_candidate: Callable[[], None] | None = None) -> Iterator[Calibrated]:
        c, device, dtype = problem.num_classes, problem.device, problem.dtype
        blank = [(torch.zeros(problem.num_rows, c, device=device, dtype=dtype),
                  torch.zeros(len(problem.val_labels), c, device=device, dtype=dtype)) for _ in problem.views]
        yield calibrator.posterior("given labels", blank)


class LogisticPath:
    """A forward-corrected logistic head through ``T``, one candidate per weight decay."""

    family = "logistic candidate"

    def __init__(self, config: PurifyConfig, folds: list[torch.Tensor]) -> None:
        self.config, self.folds = config, folds

    def count(self, problem: Problem) -> int:
        return len(self.config.logistic_weight_decays)

    def fit(self, problem: Problem, calibrator: Calibrator,
            on_candidate: Callable[[], None] | None = None) -> Iterator[Calibrated]:
        decays = self.config.logistic_weight_decays
        per_decay: list[Scores] = [[] for _ in decays]
        for features, val_features in problem.views:
            path_scores, path_val_scores = fit_forward_logistic_path(
                features, problem.given, calibrator.transition, val_features, problem.val_labels, self.folds,
                trusted_weight=self.config.logistic_trusted_weight, weight_decays=decays,
                max_iter=self.config.logistic_max_iter)
            for g in range(len(decays)):
                per_decay[g].append((path_scores[g], path_val_scores[g]))
        names = ["logistic"] if len(decays) == 1 else [f"logistic (weight decay {d:g})" for d in decays]
        for name, scores in zip(names, per_decay):
            yield calibrator.posterior(name, scores)


class Network:
    """The cross-fitted forward-corrected network (``mlp``), and its log-probabilities
    averaged with the best logistic candidate's (``mlp + logistic``), both held out for
    every trusted row, so the mixture is scored as fairly as each."""

    family = "network candidate"

    def __init__(self, config: PurifyConfig, generator: torch.Generator,
                 best_logistic: Callable[[], Calibrated | None]) -> None:
        self.config, self.generator, self.best_logistic = config, generator, best_logistic

    def count(self, problem: Problem) -> int:
        return 2 if self.config.logistic_candidate else 1

    def fit(self, problem: Problem, calibrator: Calibrator,
            on_candidate: Callable[[], None] | None = None) -> Iterator[Calibrated]:
        cfg = self.config
        logistic = self.best_logistic()
        scores = []
        for features, val_features in problem.views:
            precision = getattr(torch, resolve_precision(cfg.mlp_precision, features.device))
            scores.append(fit_forward_mlp(
                features, problem.given, calibrator.transition, val_features, generator=self.generator,
                folds=cfg.mlp_folds, hidden=cfg.mlp_hidden, layers=cfg.mlp_layers, epochs=cfg.mlp_epochs,
                repeats=cfg.mlp_repeats, precision=precision))
        yield calibrator.posterior("mlp", scores)
        if logistic is not None:
            mixed = [(0.5 * (mlp_s + torch.log_softmax(log_s, 1)), 0.5 * (mlp_v + torch.log_softmax(log_v, 1)))
                     for (mlp_s, mlp_v), (log_s, log_v) in zip(scores, logistic.scores)]
            yield calibrator.posterior("mlp + logistic", mixed)


def network_fits(problem: Problem, config: PurifyConfig) -> bool:
    """Whether the network can run: its mini-batches read rows at random, which features
    read in chunks or split between processes do not allow, and it needs two rows per fold."""
    whole = all(isinstance(features, torch.Tensor) for features, _ in problem.views)
    return whole and problem.num_rows >= 2 * config.mlp_folds
