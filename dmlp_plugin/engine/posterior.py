"""Label posterior from a classifier and the measured noise transition (not in the paper).

Given a classifier's ``p(y | x)`` and the noise transition ``T[y, ỹ] = P(ỹ | y)``, the
posterior of the true label of a sample whose given label is ``ỹ`` is

    p(y | x, ỹ) ∝ p(y | x) · T[y, ỹ]

(assuming the label noise depends on ``x`` only through ``y``). It keeps a given label
unless the classifier's evidence against it outweighs how reliable labels of that class
were measured to be: at 20% noise a label is flipped only on strong evidence, at 90%
on weak evidence. ``T`` is counted on the trusted set, whose given and clean labels are
both known in the CIFAR protocol; otherwise it is estimated from the classifier itself.

Counted on 1,000 trusted samples, ``T`` is coarse: at 20% symmetric noise each
off-diagonal entry rests on about two counts, and the posterior's flip thresholds,
``log T[ỹ, ỹ] / T[y, ỹ]``, inherit that noise. :func:`refine_transition` adds the
training rows' expected counts under the posterior (EM, with the classifier held fixed),
pooling fifty times more rows.

With 10 trusted rows a class it is worse than coarse: at 90% symmetric noise a class's
row of ``T`` rests on ten pairs, and the posterior's flip thresholds follow which of
them landed where. :func:`shrunk_transition` shrinks each class's counts toward one
pooled keep rate, by as much as the counts themselves say they agree with it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .lbfgs import minimize_lbfgs_batched
from .ls_head import fit_temperature
from .softmax import softmax_

__all__ = ["pair_counts", "counted_transition", "transition_from_pairs", "shrunk_transition",
           "transition_from_predictions",
           "refine_transition", "heldout_log_transition", "fit_transition_weight",
           "fit_posterior_offsets", "offsets_identified", "PosteriorFit"]

#: The transition weights ``b`` tried by :func:`fit_transition_weight`: 0 (the classifier
#: alone) to 1.5 in steps of 0.05; 1 is the plain posterior.
TRANSITION_WEIGHTS = tuple(k / 20 for k in range(31))


def pair_counts(clean: torch.Tensor, given: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``n[y, ỹ]`` (C, C) float64: how many (clean, given) pairs are ``(y, ỹ)``."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=clean.device)
    counts.index_put_((clean.long(), given.long()), torch.ones_like(clean, dtype=torch.float64), accumulate=True)
    return counts


def counted_transition(clean: torch.Tensor, given: torch.Tensor, num_classes: int, *,
                       shrink: bool = False) -> torch.Tensor:
    """``T`` from (clean, given) pairs: :func:`shrunk_transition` if ``shrink``, else
    :func:`transition_from_pairs` with add-one smoothing."""
    count = shrunk_transition if shrink else transition_from_pairs
    return count(clean, given, num_classes)


def transition_from_pairs(clean: torch.Tensor, given: torch.Tensor, num_classes: int, *,
                          smoothing: float = 1.0) -> torch.Tensor:
    """``T[y, ỹ]`` counted from (clean, given) label pairs, with additive smoothing."""
    counts = pair_counts(clean, given, num_classes)
    counts += smoothing / num_classes
    return (counts / counts.sum(1, keepdim=True)).float()


#: The prior strengths ``α`` :func:`shrunk_transition` chooses among: 0.3 to 1,000 pairs'
#: worth, evenly on a log scale (at 1,000 the pooled rate all but replaces the counts).
SHRINKAGE_GRID = tuple(10 ** (k / 6 - 0.5) for k in range(22))


def shrunk_transition(clean: torch.Tensor, given: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``T[y, ỹ]`` from (clean, given) pairs, each class's row shrunk toward a pooled prior.

    The prior ``T₀`` keeps a label with the keep rate ``κ`` pooled over every pair (its
    rest spread evenly over the other classes); each row of ``T`` is the Dirichlet
    posterior mean ``(n[y, :] + α·T₀[y, :]) / (n_y + α)``. The strength ``α`` maximises
    the counts' Dirichlet-multinomial evidence (empirical Bayes, on
    :data:`SHRINKAGE_GRID`): large where every class's counts look like draws of ``T₀``
    (symmetric noise), small where they do not (flips between class pairs, human noise
    with many rows), so structure the counts show is kept. A class without trusted rows
    gets ``T₀``. On the suite's tuning draws it adds 8 points of label accuracy with 10
    trusted rows a class on the strong features and 2 with 25 (docs/engine.md).
    """
    c = num_classes
    clean, given = clean.long(), given.long()
    keep = ((clean == given).sum().double() + 1) / (len(clean) + 2)  # Laplace's rule: defined with no pairs too
    off = (1 - keep) / max(c - 1, 1)
    alpha = _evidence_strength(clean, given, c, keep, off)
    t = pair_counts(clean, given, c) + alpha * off
    t.diagonal().add_(alpha * (keep - off))
    return (t / t.sum(1, keepdim=True)).float()


def _evidence_strength(clean: torch.Tensor, given: torch.Tensor, num_classes: int, keep: torch.Tensor,
                       off: torch.Tensor) -> torch.Tensor:
    """The ``α`` of :data:`SHRINKAGE_GRID` under which the pair counts are likeliest.

    The Dirichlet-multinomial evidence of row ``y``, ``lgamma(α) - lgamma(α + n_y) +
    Σ_ỹ [lgamma(α·T₀ + n) - lgamma(α·T₀)]``, has zero terms where a count is zero, so it is
    summed over the pairs that occur (at most one per trusted row), never over all C²
    entries: a thousand classes cost what ten do.
    """
    cells, counts = torch.unique(clean * num_classes + given, return_counts=True)
    prior = torch.where(cells // num_classes == cells % num_classes, keep, off)  # T₀ at each occurring pair
    rows = torch.bincount(clean, minlength=num_classes).double()
    alphas = torch.tensor(SHRINKAGE_GRID, dtype=torch.float64, device=clean.device).view(-1, 1)
    lg = torch.lgamma
    evidence = ((lg(alphas) - lg(alphas + rows)).sum(1)
                + (lg(alphas * prior + counts.double()) - lg(alphas * prior)).sum(1))
    return alphas[evidence.argmax(), 0]


def heldout_log_transition(clean: torch.Tensor, given: torch.Tensor, folds: list[torch.Tensor],
                           num_classes: int, *, shrink: bool = False) -> torch.Tensor:
    """``log T₋ₖ[:, ỹ_v]`` (V, C) for each trusted row ``v`` of fold ``k``: ``T`` counted
    from the other folds' pairs (shrunk as :func:`shrunk_transition` if ``shrink``), so a
    row's score never uses its own (clean, given) pair."""
    out = torch.empty(len(clean), num_classes, device=clean.device)
    for mask in folds:
        t = counted_transition(clean[~mask], given[~mask], num_classes, shrink=shrink)
        out[mask] = t.clamp_min(1e-12).log().T[given[mask]]
    return out


def transition_from_predictions(probs: torch.Tensor, given: torch.Tensor, num_classes: int,
                                *, smoothing: float = 1.0) -> torch.Tensor:
    """``T[y, ỹ]`` estimated from soft predictions: the expected joint of (y, ỹ)."""
    joint = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=probs.device)
    joint.index_add_(1, given.long(), probs.double().T)
    joint += smoothing / num_classes
    return (joint / joint.sum(1, keepdim=True)).float()


def refine_transition(scores: torch.Tensor, given: torch.Tensor, val_scores: torch.Tensor,
                      val_labels: torch.Tensor, val_given: torch.Tensor | None,
                      transition: torch.Tensor, *, steps: int = 20,
                      recalibrate_every: int = 5) -> torch.Tensor:
    """Re-estimate ``T`` by EM over the training rows, the trusted pairs counting as data.

    Every ``recalibrate_every`` steps the classifier's ``scores`` (N, C) are calibrated
    with one temperature fitted on the trusted rows' held-out ``val_scores`` under the
    current ``T``; each step takes the label
    posterior ``q_i ∝ p(y | x_i)·T[y, ỹ_i]``, and sets ``T[y, ỹ] ∝ n_trusted(y, ỹ) +
    Σ_{i: ỹ_i = ỹ} q_i(y)``, the maximum-likelihood update with the classifier fixed.
    ``val_given`` (the trusted rows' given labels) may be None: then only training rows count.

    On the CIFAR-10 benchmark it cuts the error of ``T`` counted on 1,000 trusted samples
    by about 40% and adds 0.5-1.0 points of label accuracy at 20-50% symmetric noise
    (docs/engine.md).
    """
    num_classes = scores.shape[1]
    trusted = (pair_counts(val_labels, val_given, num_classes) if val_given is not None else
               torch.zeros(num_classes, num_classes, dtype=torch.float64, device=scores.device))
    # Everything per row is laid out (C, N), so each pass runs along rows of length N,
    # and the per-step work is a few passes over two (C, N) buffers, reused.
    given_rows = torch.nn.functional.one_hot(given.long(), num_classes).T.to(scores.dtype)
    rows = scores.T.contiguous()
    scaled = torch.empty_like(rows)
    posterior = torch.empty_like(rows)
    for step in range(steps):
        log_t = transition.clamp_min(1e-12).log()  # (y, ỹ)
        if step % recalibrate_every == 0:
            val_prior = log_t.T[val_given] if val_given is not None else 0.0
            scale, _ = fit_temperature(val_scores, val_labels, val_prior)
            torch.mul(rows, scale, out=scaled)
        # log T[y, ỹ_i] for every row as a product with the one-hot given labels: exact
        # (one nonzero term per entry) and one pass, where a gather plus an add take three.
        torch.addmm(scaled, log_t, given_rows, out=posterior)
        softmax_(posterior, 0)  # over classes
        joint = trusted + (posterior @ given_rows.T).double()  # Σ_{i: ỹ_i = ỹ} q_i(y)
        transition = (joint / joint.sum(1, keepdim=True).clamp_min(1e-30)).to(scores.dtype)
    return transition


def fit_transition_weight(val_scores: torch.Tensor, val_labels: torch.Tensor,
                          val_log_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Temperature ``a`` and transition weight ``b`` minimising the trusted rows' log-loss of
    ``softmax(a·s + b·log T[:, ỹ])``: ``(a, b, nll)`` as 0-d tensors.

    ``b = 1`` is the posterior ``p(y | x)·T[y, ỹ]``, exact when the noise depends on ``x``
    only through ``y``. Human labellers err where an image is ambiguous, which is where
    the classifier is unsure too; there a given label is less reliable than the class
    average ``T`` says, and the trusted rows ask for ``b < 1`` (0.7-0.75 on CIFAR-10N's
    worst labels, where it adds 0.5-1.0 points; docs/engine.md). ``val_log_t`` should be
    the ``T`` the posterior will use: under a coarser one (the trusted count alone) ``b``
    also shrinks that ``T``'s own noise. ``b`` is chosen on a grid
    (:data:`TRANSITION_WEIGHTS`, which holds 1), ``a`` by :func:`fit_temperature` at each.
    """
    scales, nlls = _temperatures_on_grid(val_scores, val_labels, val_log_t)
    k = nlls.argmin()
    weights = torch.tensor(TRANSITION_WEIGHTS, dtype=val_scores.dtype, device=val_scores.device)
    return scales.take(k), weights.take(k), nlls.take(k)


def _temperatures_on_grid(val_scores: torch.Tensor, val_labels: torch.Tensor,
                          val_log_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fit_temperature` at each ``b`` of :data:`TRANSITION_WEIGHTS`: ``(scales, nlls)``."""
    fits = [fit_temperature(val_scores, val_labels, b * val_log_t) for b in TRANSITION_WEIGHTS]
    return torch.stack([scale for scale, _ in fits]), torch.stack([nll for _, nll in fits])


def offsets_identified(val_labels: torch.Tensor, num_classes: int, min_rows: int) -> bool:
    """Whether every class has ``min_rows`` trusted rows, the fewest with which
    :func:`fit_posterior_offsets` is used (``PurifyConfig.offsets_min_rows_per_class``): with
    fewer, a rare class's offset and the keep offset rest on a handful of rows (on six
    trusted images of two classes the offsets kept every given label)."""
    counts = torch.bincount(val_labels.long(), minlength=num_classes)
    return bool(counts.min() >= min_rows)


class PosteriorFit(NamedTuple):
    """``log p(y | x, ỹ) = a·s + b·log T[y, ỹ] + c·[y = ỹ] + β_y`` (up to normalisation)."""

    scale: torch.Tensor  # a, 0-d
    weight: torch.Tensor  # b, 0-d
    keep: torch.Tensor  # c, 0-d: the given label's own offset
    offsets: torch.Tensor  # β, (C,): one per class

    def log_prior(self, log_t_given: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """``b·log T[:, ỹ] + c·[y = ỹ] + β`` per row, from ``log_t_given`` (N, C) = ``log T[:, ỹ_i]``."""
        prior = self.weight * log_t_given + self.offsets
        return prior.scatter_add_(1, given.long().unsqueeze(1), self.keep.expand(len(given), 1))


#: L-BFGS iterations of :func:`fit_posterior_offsets`: C + 2 smooth parameters per grid
#: point converge well within them (the log-loss moved by < 1e-6 after 60 on the benchmark).
OFFSET_ITERATIONS = 100


def fit_posterior_offsets(val_scores: torch.Tensor, val_labels: torch.Tensor, val_log_t: torch.Tensor,
                          val_given: torch.Tensor, *, max_iter: int = OFFSET_ITERATIONS) -> PosteriorFit:
    """Fit ``a``, ``b``, ``c`` and ``β`` of :class:`PosteriorFit` by the trusted rows' log-loss.

    ``b`` on the grid :data:`TRANSITION_WEIGHTS`, as :func:`fit_transition_weight` chooses
    it; at each ``b``, ``a``, ``c`` and ``β`` jointly by L-BFGS (all grid points at once),
    from :func:`fit_temperature`'s ``a`` and ``c = β = 0``. ``b`` stays on the grid because
    ``c`` and ``b·log T[y, ỹ]`` nearly coincide where ``T``'s off-diagonal entries are
    alike (symmetric noise); fitted freely, ``b`` wandered below zero there.

    Why: human noise depends on the image, so ``T``, a class average, misjudges both how
    often a given label is right (``c``) and how often each class is the truth (``β``:
    the classifier learnt its prior through the estimated ``T``). On the tuning draws the
    two add 0.03-0.13 points to the network's posterior on CIFAR-10N's aggregate labels,
    0.5 on its worst labels and 0.3 at 20% symmetric noise; on the benchmark's draws,
    0.02-0.27 on six settings and −0.07 at 40% asymmetric noise (docs/engine.md). The trusted
    rows are scored by held-out classifiers, so the ``C + 2`` numbers at each ``b`` are
    fitted on held-out predictions.
    """
    num_classes = val_scores.shape[1]
    dtype, device = val_scores.dtype, val_scores.device
    weights = torch.tensor(TRANSITION_WEIGHTS, dtype=dtype, device=device)
    scales, _ = _temperatures_on_grid(val_scores, val_labels, val_log_t)
    target = torch.nn.functional.one_hot(val_labels.long(), num_classes).to(dtype)
    given = torch.nn.functional.one_hot(val_given.long(), num_classes).to(dtype)
    fixed = weights.view(-1, 1, 1) * val_log_t  # (K, V, C): b·log T[:, ỹ] per grid point
    rows = val_scores.shape[0]

    def objective(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x (K, C + 2): a, c, β per grid point.
        logits = x[:, 0, None, None] * val_scores + fixed + x[:, 1, None, None] * given + x[:, None, 2:]
        log_p = torch.log_softmax(logits, 2)
        residual = (log_p.exp() - target) / rows  # d(mean log-loss) / d(logits)
        grad = torch.cat([(residual * val_scores).sum((1, 2))[:, None], (residual * given).sum((1, 2))[:, None],
                          residual.sum(1)], 1)
        return -(log_p * target).sum((1, 2)) / rows, grad

    x0 = torch.cat([scales[:, None], torch.zeros(len(weights), num_classes + 1, dtype=dtype, device=device)], 1)
    x = minimize_lbfgs_batched(objective, x0, max_iter=max_iter)
    k = objective(x)[0].argmin()
    best = x.index_select(0, k.view(1))[0]
    return PosteriorFit(best[0], weights.take(k), best[1], best[2:].clone())
