"""The least-squares rounds: DMLP's EAC with a closed-form head and a posterior target.

Each round fits the least-squares head (``engine/ls_head.py``) on the current labels plus
the trusted rows, turns its scores into a posterior through ``T``
(:meth:`~.calibrate.Calibrator.round_target`), and mixes it in,
``Y ← (1 - η)·Y + η·posterior``. Every round's posterior is a candidate, named ``round k``;
the selection guards against the drift of self-training at low noise. With two feature
views each view mixes in the other view's posterior (the official cross-update).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..config import PurifyConfig
from .calibrate import Calibrated, Calibrator
from .ls_head import LeastSquaresHead
from .problem import Problem

__all__ = ["LeastSquaresRounds"]


class LeastSquaresRounds:
    """The rounds as one candidate family (see the module docstring)."""

    family = "least-squares rounds"

    def __init__(self, config: PurifyConfig, folds: list[torch.Tensor]) -> None:
        self.config, self.folds = config, folds

    def count(self, problem: Problem) -> int:
        """How many candidates :meth:`fit` yields."""
        return self.config.rounds

    @torch.no_grad()
    def fit(self, problem: Problem, calibrator: Calibrator,
            on_candidate: Callable[[], None] | None = None) -> Iterator[Calibrated]:
        """Yield each round's posterior, calibrated, as it is mixed in."""
        cfg, p = self.config, problem
        # Per-fold label chains keep the trusted log-loss honest across rounds (ls_head.py).
        heads = [LeastSquaresHead(f, vf, p.val_onehot, trusted_weight=cfg.trusted_weight, ridge=cfg.ridge,
                                  fold_masks=self.folds, chain_labels=p.init) for f, vf in p.views]
        labels = [p.init.clone() for _ in heads]
        for k in range(cfg.rounds):
            targets, nlls = [], []
            for head, current in zip(heads, labels):
                scores = head.scores(head.fit(current))
                val_scores = head.crossfit_val_scores(current)  # also the chains' scores, head.chain_scores
                target, chain_targets, nll = calibrator.round_target(scores, val_scores, head.chain_scores)
                targets.append((target, chain_targets))
                nlls.append(nll)
            posterior = sum(target for target, _ in targets) / len(targets)
            if len(heads) == 2:
                targets = targets[::-1]
            for head, current, (target, chain_targets) in zip(heads, labels, targets):
                current.mul_(1 - cfg.round_eta).add_(target, alpha=cfg.round_eta)
                head.advance_chains(chain_targets, cfg.round_eta)
            yield Calibrated(f"round {k + 1}", posterior, sum(nlls) / len(nlls))
