"""A closed-form least-squares head for EAC, fitted on current labels plus the trusted set.

This is IPC's own estimator applied to the whole training set: ``W = (XᵀX + λI)⁻¹XᵀY``
with a bias column, where the trusted samples join with weight ``w`` and their clean
labels. Under label noise, least squares is a low-variance fit (``E[W(Ỹ)] = W(Y)·T``
keeps the class directions for symmetric noise), and it is exact, deterministic and
costs one ``XᵀY`` per fit because the Gram matrix is factored once.

Its scores are not probabilities: :func:`fit_temperature` picks the scale that
minimises the trusted set's negative log-likelihood, on scores *cross-fitted* over
``k`` folds of the trusted set (each fold scored by a fit that did not see it), so the
calibration is honest.

Cross-fitting one fit is not enough once the head's predictions are mixed back into
the labels: from the second round on, the training labels carry what the full fit
learnt from every trusted sample, so a fold's held-out score is no longer held out and
its log-loss flatters later rounds (on the benchmark by 0.05-0.5 nats, enough to pick
the wrong round). Given ``chain_labels``, the head therefore keeps, per fold, its own copy
of the labels that evolves exactly like the real ones but never sees that fold:
:meth:`crossfit_val_scores` scores each fold from its own chain, and
:meth:`advance_chains` mixes each chain's own target into it.
"""

from __future__ import annotations

import torch

from .rows import FeatureRows, as_rows, gram as _gram, scores as row_scores, scores_rows, xty_rows

__all__ = ["LeastSquaresHead", "fit_temperature", "trusted_folds"]


class LeastSquaresHead:
    """Ridge regression of label distributions on features (with bias), trusted rows weighted.

    Parameters
    ----------
    features : (N, d) tensor, or :class:`~.rows.FeatureRows` read in chunks
    val_features : (V, d)
    val_onehot : (V, C)
        Clean labels of the trusted set.
    trusted_weight : float
        Weight of each trusted row relative to a training row.
    ridge : float
        Relative ridge (times the mean diagonal of the Gram matrix).
    folds : int
        Folds of the trusted set for cross-fitted scores.
    generator : torch.Generator
        Assigns trusted samples to folds (unless ``fold_masks`` are given).
    fold_masks : list of (V,) bool, optional
        The folds, when several heads must share them (two views).
    chain_labels : (N, C), optional
        The initial training labels: keep one label chain per fold from them (see the
        module docstring). Only valid when nothing but this head's mixing changes the
        labels (no IPC).
    """

    def __init__(self, features: torch.Tensor | FeatureRows, val_features: torch.Tensor, val_onehot: torch.Tensor,
                 *, trusted_weight: float = 5.0, ridge: float = 1e-3, folds: int = 5,
                 generator: torch.Generator | None = None,
                 fold_masks: list[torch.Tensor] | None = None,
                 chain_labels: torch.Tensor | None = None) -> None:
        self.features = as_rows(features)
        self.val_features = val_features
        self.val_onehot = val_onehot
        self.weight = float(trusted_weight)
        gram_train = _gram(features)
        self.fold_masks = fold_masks if fold_masks is not None else trusted_folds(
            val_features.shape[0], folds, generator, features.device)
        # Row indices of each fold, found once: indexing by the boolean masks every round
        # would synchronise with the device (torch finds a mask's nonzeros on the host).
        self.fold_rows = [torch.nonzero(mask).squeeze(1) for mask in self.fold_masks]
        self.val_rhs = _xty(val_features, val_onehot) * self.weight  # (d+1, C)
        self.chol = _factor(gram_train + self.weight * _gram(val_features), ridge)
        self.fold_chols = []
        self.fold_rhs = []
        for mask in self.fold_masks:
            keep = ~mask
            self.fold_chols.append(_factor(gram_train + self.weight * _gram(val_features[keep]), ridge))
            self.fold_rhs.append(_xty(val_features[keep], val_onehot[keep]) * self.weight)
        # (K, C, N): all K chains stacked, so each round is one wide product. Rows of
        # length N (not N rows of length C) make both the product and the softmax fast.
        self.chains = (None if chain_labels is None else
                       chain_labels.T.unsqueeze(0).repeat(len(self.fold_masks), 1, 1))
        self.chain_scores: torch.Tensor | None = None

    def fit(self, labels: torch.Tensor) -> torch.Tensor:
        """Weights ``(d+1, C)`` for training labels ``(N, C)`` plus the trusted set."""
        return _solve(self.chol, _xty(self.features, labels) + self.val_rhs)

    def scores(self, weights: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features if features is None else features
        return row_scores(features, weights[:-1].to(features.dtype), weights[-1].to(features.dtype))

    def crossfit_val_scores(self, labels: torch.Tensor) -> torch.Tensor:
        """Scores of every trusted sample from a fit that excluded its fold. ``(V, C)``.

        With chains, fold ``k``'s fit uses chain ``k`` instead of ``labels``, and every
        chain's scores on the training rows are kept in :attr:`chain_scores` ``(K, C, N)``.
        """
        out = torch.empty_like(self.val_onehot)
        if self.chains is None:
            train_rhs = _xty(self.features, labels)
            fold_weights = [_solve(chol, train_rhs + rhs)
                            for chol, rhs in zip(self.fold_chols, self.fold_rhs)]
        else:
            k, c, n = self.chains.shape
            train_rhs = xty_rows(self.features, self.chains.view(k * c, n)).view(-1, k, c)
            fold_weights = [_solve(chol, train_rhs[:, j] + rhs)
                            for j, (chol, rhs) in enumerate(zip(self.fold_chols, self.fold_rhs))]
            weights = torch.cat(fold_weights, 1).to(self.features.dtype)  # (d+1, K·C)
            self.chain_scores = scores_rows(self.features, weights[:-1].T, weights[-1:].T).view(k, c, n)
        for rows, weights in zip(self.fold_rows, fold_weights):
            out[rows] = self.scores(weights, self.val_features[rows])
        return out

    def advance_chains(self, targets: torch.Tensor, eta: float) -> None:
        """``chain ← (1 − η)·chain + η·target``; ``targets`` (K, C, N), one per chain."""
        self.chains.mul_(1 - eta).add_(targets, alpha=eta)


def trusted_folds(size: int, folds: int, generator: torch.Generator | None,
                  device: torch.device) -> list[torch.Tensor]:
    """Boolean masks splitting ``size`` trusted samples into ``folds`` random folds."""
    fold_of = torch.randperm(size, generator=generator).to(device) % max(1, min(folds, size))
    return [fold_of == k for k in range(int(fold_of.max()) + 1)]


#: The temperature grid of :func:`fit_temperature`: 10^-2 to 10^3 in 64 log steps, then
#: 33 finer ones around the best. Scores of every head here put the best scale inside it.
TEMPERATURE_GRID = (-2.0, 3.0, 64)
TEMPERATURE_REFINE = 33


def fit_temperature(val_scores: torch.Tensor, val_labels: torch.Tensor,
                    log_prior: torch.Tensor | float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale ``a`` minimising ``NLL(softmax(a·s + log_prior), y)`` on the trusted set.

    A log-spaced grid search (64 scales at once, then 32 finer ones around the best),
    robust where a gradient method could diverge on separable data, and free of host
    synchronisation. Returns ``(a, nll)`` as 0-d tensors.
    """

    def nll_for(grid: torch.Tensor) -> torch.Tensor:
        logits = grid.view(-1, 1, 1) * val_scores.unsqueeze(0) + log_prior
        return torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), val_labels.unsqueeze(0).expand(len(grid), -1),
            reduction="none").mean(1)

    low, high, steps = TEMPERATURE_GRID
    log_grid = torch.linspace(low, high, steps, device=val_scores.device, dtype=val_scores.dtype)
    step = log_grid[1] - log_grid[0]
    # take(), not [argmin]: indexing by a 0-d tensor reads it on the host (.item()).
    best = log_grid.take(nll_for(10 ** log_grid).argmin())
    fine = best + torch.linspace(-1, 1, TEMPERATURE_REFINE, device=val_scores.device, dtype=val_scores.dtype) * step
    fine_nll = nll_for(10 ** fine)
    k = fine_nll.argmin()
    return 10 ** fine.take(k), fine_nll.take(k)


def _xty(x: torch.Tensor | FeatureRows, y: torch.Tensor) -> torch.Tensor:
    """``[x 1]ᵀ y`` in float64."""
    return xty_rows(x, y.T)


def _factor(gram: torch.Tensor, ridge: float) -> torch.Tensor:
    gram = gram.clone()
    d = gram.shape[0] - 1
    scale = gram.diagonal()[:d].mean().clamp_min(1e-12)
    gram.diagonal()[:d] += max(ridge, 1e-9) * scale  # the bias is not penalised
    return torch.linalg.cholesky(gram)


def _solve(chol: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    return torch.cholesky_solve(rhs, chol)
