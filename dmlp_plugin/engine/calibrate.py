"""The default pipeline's one calibrator: a candidate's scores → a label posterior through
the noise transition ``T``, and the held-out trusted log-loss that selects among them.

Every candidate hands over, per feature view, its scores on the training rows and its
*held-out* scores on the trusted rows (from fits that never saw those rows). From them:

- **the selection score**: the trusted rows' log-loss of ``softmax(a·s + log T₋ₖ[:, ỹ])``,
  ``a`` one fitted temperature and ``T₋ₖ`` counted without the row's own fold, the same
  formula for every candidate (:meth:`Calibrator.selection_score`);
- **the posterior** ``p(y | x, ỹ) ∝ p(y | x)·T[y, ỹ]``: ``T`` refined by EM over the
  training rows, then weighted by ``b`` and given keep/class offsets fitted on the trusted
  rows (:meth:`Calibrator.posterior`; ``engine/posterior.py``).

The least-squares rounds use a lighter posterior (temperature under the EM-refined ``T``,
no weight or offsets, :meth:`Calibrator.round_target`): it is also what they mix into the
labels, and their chains of labels per trusted fold must be mixed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import PurifyConfig
from .ls_head import fit_temperature
from .posterior import (fit_posterior_offsets, fit_transition_weight, heldout_log_transition, offsets_identified,
                        refine_transition, transition_from_predictions)
from .problem import Problem
from .softmax import softmax_, softmax_rows

__all__ = ["Calibrator", "Calibrated", "Scores"]

#: Per feature view: (N, C) scores of the training rows, (V, C) held-out scores of the trusted rows.
Scores = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Calibrated:
    """A candidate turned into labels: its posterior (mean over views), its selection score,
    its scores (kept for mixtures), and the fitted transition weight ``b`` (None if not fitted)."""

    name: str
    posterior: torch.Tensor
    nll: torch.Tensor
    scores: Scores | None = None
    transition_weight: torch.Tensor | None = None


class Calibrator:
    """Calibration shared by every candidate of one run (see the module docstring).

    ``transition``: ``T`` counted on the trusted pairs (shrunk with
    ``transition_shrinkage``); None for a separate trusted set,
    whose given labels are unknown: then the first least-squares round estimates it from
    its own predictions (:meth:`round_target`) and every later candidate uses that.
    """

    def __init__(self, problem: Problem, config: PurifyConfig, folds: list[torch.Tensor]) -> None:
        self.p, self.config = problem, config
        self.transition = problem.counted_transition(shrink=config.transition_shrinkage)
        # Scoring a trusted row under T counted from that very row would flatter every
        # candidate's log-loss; each row is scored under T counted without its fold.
        self.val_log_t = (None if problem.val_given is None else
                          heldout_log_transition(problem.val_labels, problem.val_given, folds, problem.num_classes,
                                                 shrink=config.transition_shrinkage))
        self.offsets = (config.fit_posterior_offsets and problem.val_given is not None
                        and offsets_identified(problem.val_labels, problem.num_classes,
                                               config.offsets_min_rows_per_class))

    def selection_score(self, val_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a, nll)``: the temperature and the trusted log-loss under the held-out ``T``."""
        return fit_temperature(val_scores, self.p.val_labels, 0.0 if self.val_log_t is None else self.val_log_t)

    def round_target(self, scores: torch.Tensor, val_scores: torch.Tensor, chain_scores: torch.Tensor | None):
        """A least-squares round's posterior, its chains' targets ``(K, C, N)`` and its score."""
        p = self.p
        if self.transition is None:
            scale, _ = fit_temperature(val_scores, p.val_labels)
            self.transition = transition_from_predictions(softmax_rows(scale * scores), p.given,
                                                          scores.shape[1]).to(scores.dtype)
        prior = self._log_t()[p.given]
        scale, nll = self.selection_score(val_scores)
        if self.config.transition_em_steps:
            log_r = self._refined_log_t(scores, val_scores)
            prior = log_r[p.given]
            scale, _ = fit_temperature(val_scores, p.val_labels,
                                       log_r[p.val_given] if p.val_given is not None else 0.0)
        chain_targets = None if chain_scores is None else softmax_(scale * chain_scores + prior.T.unsqueeze(0), 1)
        return softmax_rows(scale * scores + prior), chain_targets, nll

    def posterior(self, name: str, scores: Scores) -> Calibrated:
        """The full posterior of a candidate (mean over views) and its selection score."""
        posteriors, nlls, weights = [], [], []
        for view_scores, val_scores in scores:
            post, nll, weight = self._view_posterior(view_scores, val_scores)
            posteriors.append(post)
            nlls.append(nll)
            if weight is not None:
                weights.append(weight)
        return Calibrated(name, sum(posteriors) / len(posteriors), sum(nlls) / len(nlls), scores,
                          sum(weights) / len(weights) if weights else None)

    def _view_posterior(self, scores: torch.Tensor, val_scores: torch.Tensor):
        p, cfg = self.p, self.config
        scale, nll = self.selection_score(val_scores)
        log_t = self._refined_log_t(scores, val_scores) if cfg.transition_em_steps else self._log_t()
        prior, weight = log_t[p.given], None
        if cfg.fit_transition_weight and p.val_given is not None:
            # Fitted under the T the training rows use: under the coarse held-out count, b
            # would also shrink that count's own noise. The selection score stays the one
            # above, taken alike for every candidate.
            if self.offsets:
                fit = fit_posterior_offsets(val_scores, p.val_labels, log_t[p.val_given], p.val_given)
                scale, weight, prior = fit.scale, fit.weight, fit.log_prior(prior, p.given)
            else:
                scale, weight, _ = fit_transition_weight(val_scores, p.val_labels, log_t[p.val_given])
                prior = weight * prior
        elif cfg.transition_em_steps:
            scale, _ = fit_temperature(val_scores, p.val_labels, log_t[p.val_given] if p.val_given is not None else 0.0)
        return softmax_rows(scale * scores + prior), nll, weight

    def _log_t(self) -> torch.Tensor:
        """``log T[:, ỹ]`` for each given label ``ỹ`` (row ``ỹ``), under ``T`` as counted."""
        return self.transition.clamp_min(1e-12).log().T

    def _refined_log_t(self, scores: torch.Tensor, val_scores: torch.Tensor) -> torch.Tensor:
        """``log T[:, ỹ]`` under ``T`` refined by EM with this candidate's scores."""
        p = self.p
        refined = refine_transition(scores, p.given, val_scores, p.val_labels, p.val_given, self.transition,
                                    steps=self.config.transition_em_steps)
        return refined.clamp_min(1e-12).log().T
