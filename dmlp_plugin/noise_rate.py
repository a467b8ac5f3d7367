"""How many purified labels are still wrong: estimates that need no clean labels.

Integrations set the options that should follow the *residual* noise of the labels a
method trains on (Co-teaching's forget rate, CDR's noise rate) from these estimates.
``benchmarks/residual_noise.py`` compares them with the truth on CIFAR-10 (k-means features,
1,000 trusted rows), and the suite (``benchmarks/suite.py report --section estimates``)
across feature sets and trusted-set sizes.

``"entropy"``
    When the labels come from a selected posterior candidate (the default config), the
    result records that candidate's cross-fitted log-loss on held-out trusted rows.
    Calibrated soft labels would have that mean entropy: the soft labels are tempered
    (raised to one power and renormalised) until they do, and one minus their mean
    confidence is returned. Mean absolute error 1.0 point on the benchmark; on the suite
    0.7–1.5 with 100 trusted rows a class and 3.7–4.1 with 10, where the log-loss rests
    on 100 rows.
``"agreement"``
    From how often the purified labels keep the given ones. The trusted rows carry their
    clean label in ``labels`` and their noisy one in ``given_labels``, so the given
    labels' accuracy ``g`` is measured there; if the purified labels' errors were
    independent of the given labels' and spread evenly over the wrong classes, purified
    rows would keep their given label at the rate ``u = a·g + (1 − a)(1 − g)/(C − 1)``,
    which is solved for the purified accuracy ``a``. For paper mode, whose soft labels
    are IPC's label variables rather than probabilities (4.6 points).
``"confidence"``
    One minus the mean confidence: right only for calibrated soft labels (1.0 point low
    in the default config on the benchmark, 6 on the suite; 24 points low in paper mode).

``"auto"`` takes the first that applies, in that order.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .errors import InputError

__all__ = ["estimate_noise_rate", "METHODS", "PurifiedLabels"]

METHODS = ("auto", "entropy", "agreement", "confidence")


class PurifiedLabels(Protocol):
    """What the estimates read from a result (a :class:`~dmlp_plugin.result.PurifyResult`
    has all of it). Described here rather than imported, so this module does not depend on
    the one that calls it (``PurifyResult.estimated_noise_rate``)."""

    soft_labels: np.ndarray
    labels: np.ndarray
    given_labels: np.ndarray
    confidence: np.ndarray
    trusted_indices: np.ndarray
    num_classes: int
    metadata: dict[str, Any]


def estimate_noise_rate(result: PurifiedLabels, method: str = "auto") -> float | None:
    """Estimated fraction of wrong labels among the purified (non-trusted) samples.

    Parameters
    ----------
    result
        A purification result.
    method
        One of :data:`METHODS`; see the module docstring.

    Returns
    -------
    The estimate in ``[0, 1]``, or ``None`` when ``method`` does not apply to ``result``
    (``"entropy"`` without a recorded log-loss, ``"agreement"`` without trusted rows).
    """
    if method not in METHODS:
        raise InputError(f"unknown noise-rate estimate {method!r}; choose one of {', '.join(METHODS)}")
    order = ("entropy", "agreement", "confidence") if method == "auto" else (method,)
    for name in order:
        value = _ESTIMATES[name](result)
        if value is not None:
            return float(np.clip(value, 0.0, 1.0))
    return None


def _purified_rows(result: PurifiedLabels) -> np.ndarray:
    keep = np.ones(len(result.labels), bool)
    keep[np.asarray(result.trusted_indices, dtype=np.int64)] = False
    return keep


def _confidence(result: PurifiedLabels) -> float | None:
    conf = np.asarray(result.confidence, dtype=np.float64)[_purified_rows(result)]
    return float(1.0 - conf.mean()) if conf.size else None


def _tempered(log_soft: np.ndarray, t: float) -> np.ndarray:
    z = t * log_soft
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def _mean_entropy(p: np.ndarray) -> float:
    return float(-(p * np.log(np.clip(p, 1e-300, None))).sum(1).mean())


def _selected_nll(metadata: dict[str, Any]) -> float | None:
    """The chosen candidate's cross-fitted trusted log-loss: from ``candidates`` (one dict
    per candidate, the chosen one ``selected``), or from ``candidate_nll`` and
    ``selected`` in results written before candidates were recorded."""
    for candidate in metadata.get("candidates") or []:
        if candidate.get("selected"):
            return candidate.get("trusted_nll")
    return (metadata.get("candidate_nll") or {}).get(metadata.get("selected"))


def _entropy(result: PurifiedLabels) -> float | None:
    nll = _selected_nll(result.metadata)
    soft = np.asarray(result.soft_labels, dtype=np.float64)[_purified_rows(result)]
    if nll is None or not len(soft):
        return None
    log_soft = np.log(np.clip(soft, 1e-12, None))
    lo, hi = np.log(0.05), np.log(20.0)  # the mean entropy falls as the power grows: bisect on its log
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _mean_entropy(_tempered(log_soft, float(np.exp(mid)))) > nll:
            lo = mid
        else:
            hi = mid
    return float(1.0 - _tempered(log_soft, float(np.exp(0.5 * (lo + hi)))).max(1).mean())


def _agreement(result: PurifiedLabels) -> float | None:
    trusted = np.asarray(result.trusted_indices, dtype=np.int64)
    keep = _purified_rows(result)
    if not len(trusted) or not keep.any():
        return None
    g = float((result.labels[trusted] == result.given_labels[trusted]).mean())
    u = float((result.labels[keep] == result.given_labels[keep]).mean())
    q = (1.0 - g) / (result.num_classes - 1)
    if g - q <= 1e-6:  # the given labels are at chance: nothing to solve
        return None
    return float(1.0 - np.clip((u - q) / (g - q), 0.0, 1.0))


_ESTIMATES = {"entropy": _entropy, "agreement": _agreement, "confidence": _confidence}
