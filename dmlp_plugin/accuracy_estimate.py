"""How accurate the purified labels are, estimated without clean labels outside the trusted set.

Under the CIFAR protocol the trusted rows are training rows: besides their clean label
they carry a given (noisy) label, drawn like every other row's. So they can play both
parts. The trusted set is split into ``K`` folds (stratified by clean class); for each
fold, the purifier runs again with the other folds as the trusted set and this fold's
rows as ordinary rows carrying their given labels, and this fold's purified labels are
scored against their clean labels. Every trusted row is scored once, by a run that did
not see its clean label; the pooled fraction correct estimates the accuracy of purified
labels on the non-trusted rows.

What it assumes, and where it differs from the labels the full run returns:

- The trusted rows are a random sample of the training rows, and their given labels are
  noisy like the others' (not overwritten with the clean ones: that would make the
  held-out rows easier than the rest, and the estimate optimistic).
- Each fold run has ``(K − 1)/K`` of the trusted rows (800 of 1,000 at ``K = 5``). A run
  with fewer trusted rows is, if anything, less accurate, so the estimate leans low by as
  much as the method depends on the trusted set's size. The fold runs are otherwise full
  purifications with the same config and seed; nothing is cut short, because a cheaper
  run would describe other labels than the ones returned.

  With 100 trusted rows a class the default barely leans: on the benchmark suite (CIFAR-10,
  10,000 rows, three feature sets, nine noises, two draws; ``benchmarks/suite.py report
  --section estimates``) the mean error is −1.6 to +0.3 points per feature set. With 10 a
  class the error is larger both ways (mean absolute error 3.4–4.8, worst −18): 100 rows
  are a small sample, and at 80–90% noise a run with 8 rows a class is visibly weaker than
  one with 10. Paper mode leans low at high noise, where IPC relies most on the trusted
  set: at 90% symmetric noise (``benchmarks/accuracy_estimate.py``, 1,000 trusted rows) the
  mean error over five draws was −2.7 points with ``K = 5`` and −1.3 with ``K = 10``, so use
  ``folds=10`` there if twice the cost is acceptable.
- The interval is a Wilson score interval over the pooled held-out rows: each is one
  Bernoulli draw of "purified label right". Wilson rather than the normal (Wald)
  interval or a bootstrap over rows (which reproduces Wald) because it keeps its
  coverage near 0 and 1 and for small trusted sets, and needs no resampling. It does not
  count the variation between the fold runs and the full run, nor the lean above; the
  suite measures both against the truth (with 10 trusted rows a class the interval held
  the truth in 47 of 54 cells, with 100 in 46 of 54).

The same held-out rows also give the accuracy of the *given* labels, so the two can be
compared row by row: :attr:`AccuracyEstimate.worse_than_given` says when purification
looks harmful.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Callable

import numpy as np

from .errors import InputError

__all__ = ["AccuracyEstimate", "DEFAULT_FOLDS", "estimate_label_accuracy", "trusted_folds",
           "wilson_interval"]

#: Folds of the trusted set: five extra purifications, each with 80% of the trusted rows.
#: Enough for the default config (no measurable lean); paper mode at high noise does
#: better with 10 (see the module docstring).
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class AccuracyEstimate:
    """Cross-fitted accuracy of purified labels, and of the given labels on the same rows.

    Attributes
    ----------
    accuracy : float
        Fraction of held-out trusted rows whose purified label equals their clean label:
        the estimated accuracy of the purified labels on the non-trusted rows.
    interval : tuple of float
        ``(low, high)`` Wilson score interval of ``accuracy`` at ``confidence``.
    given_accuracy : float
        Fraction of the trusted rows whose given label equals their clean label.
    given_interval : tuple of float
        Wilson interval of ``given_accuracy``.
    num_rows : int
        Held-out rows scored (the size of the trusted set).
    folds : int
        Number of cross-fitting folds (extra purifications).
    confidence : float
        Level of both intervals.
    fixed : int
        Held-out rows whose given label was wrong and purified label right.
    broken : int
        Held-out rows whose given label was right and purified label wrong.
    """

    accuracy: float
    interval: tuple[float, float]
    given_accuracy: float
    given_interval: tuple[float, float]
    num_rows: int
    folds: int
    confidence: float
    fixed: int
    broken: int

    @property
    def worse_than_given(self) -> bool:
        """The purified labels are estimated less accurate than the given ones (on the
        same rows: ``broken > fixed``)."""
        return self.accuracy < self.given_accuracy

    @property
    def worse_p_value(self) -> float:
        """One-sided exact sign test on the rows where purified and given labels disagree
        in correctness: the chance of at least ``broken`` of the ``broken + fixed`` rows
        going the wrong way if purification did no harm on average. Small means the harm
        is real; near 0.5 or above, the difference is within chance."""
        n = self.broken + self.fixed
        if n == 0:
            return 1.0
        return min(1.0, sum(math.comb(n, k) for k in range(self.broken, n + 1)) / 2 ** n)

    def describe(self) -> str:
        """One line: the estimate, its interval and how it was made."""
        low, high = self.interval
        return (f"{self.accuracy:.2%} ({self.confidence:.0%} Wilson interval {low:.2%}–{high:.2%}; "
                f"{self.folds}-fold cross-fit on {self.num_rows:,} trusted rows)")

    def warning_text(self) -> str:
        """Why the purified labels look worse than the given ones, with the numbers."""
        return (f"the purified labels look worse than the given ones: estimated accuracy "
                f"{self.describe()}, against {self.given_accuracy:.2%} for the given labels of the "
                f"same rows (purification broke {self.broken} right labels and fixed {self.fixed}; "
                f"one-sided sign test p = {self.worse_p_value:.2g}); consider another config (PurifyConfig() is the benchmark's best) or keeping the "
                "given labels")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, as stored in a result file."""
        return {**asdict(self), "interval": list(self.interval), "given_interval": list(self.given_interval)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AccuracyEstimate":
        """Inverse of :meth:`to_dict`; raises ``KeyError``/``TypeError``/``ValueError`` on
        malformed input."""
        return cls(accuracy=float(data["accuracy"]), interval=_pair(data["interval"]),
                   given_accuracy=float(data["given_accuracy"]), given_interval=_pair(data["given_interval"]),
                   num_rows=int(data["num_rows"]), folds=int(data["folds"]),
                   confidence=float(data["confidence"]), fixed=int(data["fixed"]), broken=int(data["broken"]))


def _pair(value: Any) -> tuple[float, float]:
    low, high = value
    return float(low), float(high)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes : int
        Number of successes, ``0 <= successes <= n``.
    n : int
        Number of trials, ``n >= 1``.
    confidence : float
        Two-sided level in ``(0, 1)``.

    Returns
    -------
    tuple of float
        ``(low, high)`` within ``[0, 1]``.
    """
    if n < 1 or not 0 <= successes <= n:
        raise InputError(f"need 0 <= successes <= n and n >= 1, got successes={successes}, n={n}")
    if not 0 < confidence < 1:
        raise InputError(f"confidence must lie in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def trusted_folds(val_labels: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Split trusted-set positions into ``folds`` folds, stratified by clean class.

    Stratifying keeps every class in every fold's complement, which each fold run needs
    as its trusted set, and keeps the complements' class mix like the full set's.

    Parameters
    ----------
    val_labels : np.ndarray, shape (V,)
        Clean labels of the trusted rows.
    folds : int
        Number of folds, ``2 <= folds <= V``.
    seed : int
        Seeds the shuffle within each class.

    Returns
    -------
    list of np.ndarray
        ``folds`` sorted arrays of positions into ``val_labels``; together they cover
        ``range(V)`` once, and their sizes differ by at most one.

    Raises
    ------
    InputError
        When ``folds`` is out of range or a class has fewer than two trusted rows (it
        would be missing from one fold run's trusted set).
    """
    val_labels = np.asarray(val_labels)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= len(val_labels):
        raise InputError(f"the accuracy estimate needs between 2 and {len(val_labels)} folds "
                         f"(the trusted set's size), got {folds!r}")
    classes, counts = np.unique(val_labels, return_counts=True)
    if (counts < 2).any():
        raise InputError(
            f"the accuracy estimate needs at least 2 trusted rows of every class, so that each fold "
            f"run keeps one; class {int(classes[counts < 2][0])} has 1")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(val_labels), np.int64)
    offset = 0
    for c in classes:
        rows = rng.permutation(np.flatnonzero(val_labels == c))
        # Continue the round-robin across classes, so fold sizes differ by at most one.
        fold_of[rows] = (offset + np.arange(len(rows))) % folds
        offset += len(rows)
    return [np.flatnonzero(fold_of == k) for k in range(folds)]


def estimate_label_accuracy(
    purify_fold: Callable[[np.ndarray], np.ndarray],
    val_labels: np.ndarray,
    val_given: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    confidence: float = 0.95,
    on_fold: Callable[[int], None] | None = None,
) -> AccuracyEstimate:
    """Cross-fit purification over the trusted set and score each fold's held-out rows.

    Parameters
    ----------
    purify_fold : callable
        ``purify_fold(held_out) -> labels``: purify with the trusted rows at positions
        ``held_out`` moved to the ordinary rows (with their given labels) and the rest as
        the trusted set; return the purified hard labels of the held-out rows, shape
        ``(len(held_out),)``, in the order of ``held_out``.
    val_labels : np.ndarray, shape (V,)
        Clean labels of the trusted rows.
    val_given : np.ndarray, shape (V,)
        Given (noisy) labels of the same rows.
    folds : int
        Number of folds, each one extra purification.
    seed : int
        Seeds the fold split.
    confidence : float
        Level of the Wilson intervals.
    on_fold : callable, optional
        ``on_fold(k)`` after fold ``k`` (0-based) is scored, for progress reports.

    Returns
    -------
    AccuracyEstimate

    Raises
    ------
    InputError
        See :func:`trusted_folds`; also when ``purify_fold`` returns the wrong shape.

    Warns
    -----
    RuntimeWarning
        When every trusted row's given label equals its clean label: if the given labels
        were overwritten with clean ones, the held-out rows are easier than the others and
        the estimate is optimistic.
    """
    val_labels = np.asarray(val_labels, np.int64)
    val_given = np.asarray(val_given, np.int64)
    if val_labels.shape != val_given.shape:
        raise InputError(f"val_labels has shape {val_labels.shape} but val_given {val_given.shape}")
    if (val_given == val_labels).all():
        warnings.warn("every trusted row's given label equals its clean label. The accuracy estimate "
                      "assumes the trusted rows' given labels are as noisy as the others'; if they were "
                      "overwritten with the clean labels, the estimate is optimistic", RuntimeWarning,
                      stacklevel=2)
    purified = np.full(len(val_labels), -1, np.int64)
    for k, held_out in enumerate(trusted_folds(val_labels, folds, seed)):
        out = np.asarray(purify_fold(held_out))
        if out.shape != held_out.shape:
            raise InputError(f"purify_fold returned shape {out.shape} for {len(held_out)} held-out rows")
        purified[held_out] = out
        if on_fold is not None:
            on_fold(k)
    right, given_right = purified == val_labels, val_given == val_labels
    n = len(val_labels)
    return AccuracyEstimate(
        accuracy=float(right.mean()), interval=wilson_interval(int(right.sum()), n, confidence),
        given_accuracy=float(given_right.mean()),
        given_interval=wilson_interval(int(given_right.sum()), n, confidence),
        num_rows=n, folds=int(folds), confidence=float(confidence),
        fixed=int((right & ~given_right).sum()), broken=int((~right & given_right).sum()))
