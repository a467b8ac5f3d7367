"""Peer label-cleaning methods, on the same inputs as dmlp-plugin's purifier (numpy in, numpy out).

Every peer takes ``(features, noisy, trusted, trusted_labels)``:

- ``features``: ``(N, D)`` frozen features;
- ``noisy``: ``(N,)`` the given (noisy) label of every row, the trusted rows included (under
  the benchmark's protocol the noisy labels exist for every row; the trusted rows'
  given labels are only used where a peer says so);
- ``trusted``: ``(M,)`` indices of the trusted rows; ``trusted_labels``: their clean labels;

and returns a :class:`PeerResult` whose ``labels`` are ``(N,)`` hard labels, the trusted rows
carrying their clean labels. Every hyperparameter a peer chooses is chosen on the trusted
rows, never on the clean labels of the other rows.

Peers:

- :func:`given`: the noisy labels, trusted rows set to their clean labels.
- :func:`dmlp_default`: ``dmlp_plugin.purify_dataset`` with ``PurifyConfig()``.
- :func:`cleanlab_relabel`: cleanlab 2.9's ``find_label_issues`` on 5-fold out-of-fold
  probabilities of a logistic probe; flagged labels replaced by the probe's predicted class.
- :func:`knn_relabel`: SimiFeat-style kNN vote (cosine neighbours, majority of their labels).
- :func:`trusted_probe`: a logistic regression trained on the trusted rows alone.
- :func:`fc_logistic`: a forward-corrected logistic regression ("fc-logistic") through the
  noise transition counted on the trusted rows.

The logistic regressions are :func:`fit_logistic`: full-batch L-BFGS in torch (float32,
strong-Wolfe line search, the gradient written by hand) on standardised features, with scikit-learn's objective
``sum_n loss_n + ||W||² / (2C)`` (bias not penalised), so ``C`` means what it means in
``sklearn.linear_model.LogisticRegression``; ``tests/test_peers.py`` checks it against
scikit-learn. It is used instead of scikit-learn because the forward-corrected loss is
not a scikit-learn loss, and because on 50,000 × 512 it is several times faster.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from driver import write_npy

__all__ = ["PeerResult", "PEERS", "given", "dmlp_default", "cleanlab_relabel", "knn_relabel", "trusted_probe",
           "fc_logistic", "fit_logistic", "LogisticModel", "count_transition", "C_GRID"]

C_GRID = (0.001, 0.01, 0.1, 1.0)


@dataclass
class PeerResult:
    """``labels``: ``(N,)`` int64 hard labels; ``info``: the choices the peer made; ``seconds``: wall time."""

    labels: np.ndarray
    info: dict = field(default_factory=dict)
    seconds: float = 0.0


def _start(features: np.ndarray, noisy: np.ndarray, trusted: np.ndarray, trusted_labels: np.ndarray):
    x = np.asarray(features, dtype=np.float32)
    noisy = np.asarray(noisy, dtype=np.int64)
    trusted = np.asarray(trusted, dtype=np.int64)
    trusted_labels = np.asarray(trusted_labels, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(noisy):
        raise ValueError(f"features must be (N, D) with N = len(noisy) = {len(noisy)}; got {x.shape}")
    if trusted.shape != trusted_labels.shape:
        raise ValueError("trusted and trusted_labels must have the same length")
    num_classes = int(max(noisy.max(), trusted_labels.max())) + 1
    mask = np.ones(len(noisy), bool)
    mask[trusted] = False
    base = noisy.copy()
    base[trusted] = trusted_labels
    return x, noisy, trusted, trusted_labels, num_classes, mask, base


def _standardise(x: np.ndarray) -> np.ndarray:
    mean, std = x.mean(0), x.std(0)
    return ((x - mean) / np.where(std > 1e-8, std, 1.0)).astype(np.float32)


# -- logistic regression (torch, L-BFGS) -------------------------------------------------------


@dataclass
class LogisticModel:
    """``logits = x @ weight + bias`` on already standardised features."""

    weight: np.ndarray  # (D, K)
    bias: np.ndarray  # (K,)
    iterations: int = 0

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = torch.from_numpy(np.asarray(x, np.float64)) @ torch.from_numpy(self.weight)
            return F.log_softmax(z + torch.from_numpy(self.bias), 1).numpy()

    def proba(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self.log_proba(x))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, C: float, num_classes: int,
                 transition: np.ndarray | None = None, through_transition: np.ndarray | None = None,
                 max_iter: int = 500, tol: float = 1e-5, init: LogisticModel | None = None,
                 dtype: torch.dtype = torch.float32) -> LogisticModel:
    """Multinomial logistic regression, minimising ``sum_n loss_n + ||W||² / (2C)``.

    ``loss_n = -log softmax(W x_n + b)[y_n]``, or, for the rows where
    ``through_transition`` is True (all rows when it is None and ``transition`` is given),
    the forward-corrected ``-log (softmax(W x_n + b) @ T)[y_n]`` with
    ``T[i, j] = P(given = j | clean = i)``. Full-batch L-BFGS (``dtype``, float32 by
    default) with a strong-Wolfe line search, stopping when the largest entry of the
    gradient of the per-row-averaged objective falls below ``tol`` or after ``max_iter``
    iterations. ``init``: a model to start from (warm start along a ``C`` path).
    """
    xt = torch.from_numpy(np.asarray(x)).to(dtype)
    yt = torch.from_numpy(np.asarray(y, np.int64))
    n, d = xt.shape
    w = torch.zeros(d, num_classes, dtype=dtype)
    b = torch.zeros(num_classes, dtype=dtype)
    if init is not None:
        w, b = torch.from_numpy(init.weight).to(dtype).clone(), torch.from_numpy(init.bias).to(dtype).clone()
    w.requires_grad_(True)
    b.requires_grad_(True)
    # Per row, the log-likelihood of its target given the clean-class logits is
    # logsumexp_i(log p_i + L[n, i]): L[n] = log T[:, y_n] for rows through the transition,
    # log onehot(y_n) (0 at y_n, -inf elsewhere) for the others. Its gradient in the logits
    # is p - q with q = softmax(log p + L[n]), the posterior of the clean class, so the
    # gradient is written by hand: autograd's X.T @ G is several times slower on CPU.
    L = torch.full((n, num_classes), -float("inf"), dtype=dtype)
    L[torch.arange(n), yt] = 0.0
    if transition is not None:
        log_t = torch.from_numpy(np.log(np.clip(np.asarray(transition, np.float64), 1e-12, None))).to(dtype)
        fc_rows = (torch.ones(n, dtype=torch.bool) if through_transition is None
                   else torch.from_numpy(np.asarray(through_transition, bool)))
        L[fc_rows] = log_t[:, yt[fc_rows]].T
    penalty = 1.0 / (2.0 * C * n)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=tol,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        with torch.no_grad():
            logp = torch.log_softmax(xt @ w + b, 1)
            joint = logp + L
            ll = torch.logsumexp(joint, 1)
            g = (logp.exp() - (joint - ll[:, None]).exp()) / n  # (n, K)
            loss = -ll.sum() / n + penalty * (w * w).sum()
            w.grad = ((g.T @ xt).T + 2.0 * penalty * w).contiguous()
            b.grad = g.sum(0)
        return loss

    opt.step(closure)
    iters = int(opt.state[w].get("n_iter", 0))
    return LogisticModel(w.detach().double().numpy().copy(), b.detach().double().numpy().copy(), iters)


def count_transition(trusted_labels: np.ndarray, trusted_given: np.ndarray, num_classes: int, *,
                     prior: float = 0.5) -> np.ndarray:
    """``T[i, j] = P(given = j | clean = i)`` counted on the trusted rows, ``prior`` added to every cell."""
    counts = np.full((num_classes, num_classes), prior, dtype=np.float64)
    np.add.at(counts, (np.asarray(trusted_labels), np.asarray(trusted_given)), 1.0)
    return counts / counts.sum(1, keepdims=True)


# -- peers -------------------------------------------------------------------------------------


def given(features, noisy, trusted, trusted_labels) -> PeerResult:
    """The given labels, the trusted rows carrying their clean labels (what a user holds)."""
    t0 = time.perf_counter()
    *_, base = _start(features, noisy, trusted, trusted_labels)
    return PeerResult(base, {}, time.perf_counter() - t0)


def dmlp_default(features, noisy, trusted, trusted_labels, *, seed: int = 0, config=None) -> PeerResult:
    """``dmlp_plugin.purify_dataset`` with ``PurifyConfig()`` (the product's default)."""
    from dmlp_plugin import PurifyConfig, purify_dataset

    t0 = time.perf_counter()
    x, noisy, trusted, trusted_labels, k, _, _ = _start(features, noisy, trusted, trusted_labels)
    result = purify_dataset(x, noisy, val_indices=trusted, val_labels=trusted_labels, num_classes=k,
                            config=config or PurifyConfig(), seed=seed, device="cpu")
    return PeerResult(np.asarray(result.labels, np.int64), {}, time.perf_counter() - t0)


def _folds(n: int, folds: int, seed: int) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(seed).permutation(n), folds)


def cleanlab_relabel(features, noisy, trusted, trusted_labels, *, folds: int = 5, C: float | Sequence[float] = C_GRID,
                     seed: int = 0) -> PeerResult:
    """cleanlab's ``find_label_issues`` on out-of-fold probabilities of a logistic probe.

    The probe is :func:`fit_logistic` on the given labels (trusted rows with their clean
    labels). Its ``C``: with several, each is fitted on the non-trusted rows and scored by
    its accuracy on the held-out trusted rows (clean labels); the best is used (ties: the
    smaller). Then ``folds``-fold cross-validation over random folds of all rows gives
    out-of-fold probabilities, and ``find_label_issues(labels, pred_probs)`` with
    cleanlab's defaults (``filter_by="prune_by_noise_rate"``; ``n_jobs=1``) flags labels. Flagged
    non-trusted labels become the probe's predicted class; trusted rows keep their clean
    labels.
    """
    from cleanlab.filter import find_label_issues

    t0 = time.perf_counter()
    x, noisy, trusted, trusted_labels, k, mask, base = _start(features, noisy, trusted, trusted_labels)
    xs = _standardise(x)
    grid = sorted([float(C)] if np.isscalar(C) else [float(c) for c in C])
    scores: dict[float, float] = {}
    if len(grid) > 1:
        rest, init = np.flatnonzero(mask), None
        for c in grid:
            init = fit_logistic(xs[rest], base[rest], C=c, num_classes=k, init=init)
            scores[c] = float((init.log_proba(xs[trusted]).argmax(1) == trusted_labels).mean())
    best = max(grid, key=lambda c: (scores.get(c, 0.0), -c))
    probs = np.zeros((len(xs), k))
    for held in _folds(len(xs), folds, seed):
        fit_rows = np.setdiff1d(np.arange(len(xs)), held)
        probs[held] = fit_logistic(xs[fit_rows], base[fit_rows], C=best, num_classes=k).proba(xs[held])
    issues = find_label_issues(base, probs, n_jobs=1)  # its default forks a process per core
    labels = base.copy()
    flip = issues & mask
    labels[flip] = probs[flip].argmax(1)
    return PeerResult(labels, {"C": best, "trusted_acc": scores, "flagged": int(flip.sum())},
                      time.perf_counter() - t0)


_NEIGHBOURS: dict[tuple, np.ndarray] = {}


def _topk_cosine(query: torch.Tensor, base: torch.Tensor, k: int, *, offset: int | None = None,
                 chunk: int = 2048) -> np.ndarray:
    """Indices into ``base`` of each (unit-norm) query row's ``k`` most similar rows; with
    ``offset``, query row ``i`` is base row ``offset + i`` and is left out."""
    out = np.empty((len(query), k), np.int32)
    with torch.no_grad():
        for s in range(0, len(query), chunk):
            sim = query[s:s + chunk] @ base.T
            if offset is not None:
                rows = torch.arange(sim.shape[0])
                sim[rows, rows + offset + s] = -float("inf")
            out[s:s + chunk] = sim.topk(k, dim=1).indices.numpy()
    return out


def cosine_neighbours(features: np.ndarray, k: int, *, cache_dir: Path | None = None) -> np.ndarray:
    """``(N, k)`` indices of each row's ``k`` nearest other rows by cosine similarity (exact).

    Memoised per process on a hash of the features, and in ``cache_dir`` (when given) as
    ``knn-<hash>-<N>x<D>-<k>.npy``, so draws and reruns share it (exact search on 50,000
    rows takes minutes on two busy cores).
    """
    x = np.ascontiguousarray(features, np.float32)
    key = (hashlib.sha1(x.tobytes()).hexdigest()[:16], x.shape, k)
    if key in _NEIGHBOURS:
        return _NEIGHBOURS[key]
    path = None if cache_dir is None else Path(cache_dir) / f"knn-{key[0]}-{len(x)}x{x.shape[1]}-{k}.npy"
    if path is not None and path.is_file():
        _NEIGHBOURS[key] = np.load(path).astype(np.int64)
        return _NEIGHBOURS[key]
    xt = F.normalize(torch.from_numpy(x), dim=1)
    out = _topk_cosine(xt, xt, k, offset=0)
    _NEIGHBOURS[key] = out.astype(np.int64)
    if path is not None:
        write_npy(path, out)
    return _NEIGHBOURS[key]


def _vote(neigh: np.ndarray, labels: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    """Majority of ``labels[neigh[:, :k]]`` per row; ties go to the class of the nearer neighbours."""
    nb = labels[neigh[:, :k]]
    w = np.broadcast_to(1.0 + 1e-6 * (k - np.arange(k)), nb.shape)
    flat = (np.arange(len(neigh))[:, None] * num_classes + nb).ravel()
    votes = np.bincount(flat, weights=w.ravel(), minlength=len(neigh) * num_classes)
    return votes.reshape(len(neigh), num_classes).argmax(1)


def knn_relabel(features, noisy, trusted, trusted_labels, *, ks: Sequence[int] = (5, 10, 20, 50, 100, 200),
                rounds: Sequence[int] = (1, 2, 3), cache_dir: Path | None = None) -> PeerResult:
    """SimiFeat-style kNN vote: each label becomes the majority of its ``k`` cosine neighbours' labels.

    Neighbours: the exact ``k`` nearest other rows by cosine similarity of the features.
    Round 1 votes with the given labels of all rows (the trusted rows' given labels too, so
    no clean label enters a vote); round ``r`` votes with round ``r - 1``'s labels (label
    propagation). ``(k, r)`` is chosen from ``ks`` × ``rounds`` by the accuracy of the
    trusted rows' own round-``r`` labels against their clean labels: honest, since no clean
    label was used to make them. Non-trusted rows get the chosen round's labels; trusted
    rows keep their clean labels. This is SimiFeat's ``vote`` step (Zhu et al., ICML 2022)
    without its ensemble over random feature augmentations.
    """
    t0 = time.perf_counter()
    x, noisy, trusted, trusted_labels, k, mask, base = _start(features, noisy, trusted, trusted_labels)
    neigh = cosine_neighbours(x, max(ks), cache_dir=cache_dir)
    scores, best = {}, None
    for kk in ks:
        labels = noisy
        for r in range(1, max(rounds) + 1):
            labels = _vote(neigh, labels, kk, k)
            if r in rounds:
                scores[(kk, r)] = float((labels[trusted] == trusted_labels).mean())
                if best is None or scores[(kk, r)] > scores[best[0]]:
                    best = ((kk, r), labels)
    (best_k, best_r), labels = best
    labels = np.where(mask, labels, base)
    info = {"k": best_k, "rounds": best_r, "trusted_acc": {f"{a},{b}": v for (a, b), v in scores.items()}}
    return PeerResult(labels, info, time.perf_counter() - t0)


def trusted_probe(features, noisy, trusted, trusted_labels, *, C: Sequence[float] = C_GRID, folds: int = 5,
                  seed: int = 0) -> PeerResult:
    """A logistic regression trained on the trusted rows only (clean labels); predicts every label.

    ``C`` chosen from the grid by ``folds``-fold cross-validated accuracy on the trusted
    rows, then refitted on all of them.
    """
    t0 = time.perf_counter()
    x, noisy, trusted, trusted_labels, k, mask, base = _start(features, noisy, trusted, trusted_labels)
    xs = _standardise(x)
    xt = xs[trusted]
    split = _folds(len(trusted), folds, seed)
    scores = {}
    for c in C:
        correct = 0
        for held in split:
            fit_rows = np.setdiff1d(np.arange(len(trusted)), held)
            model = fit_logistic(xt[fit_rows], trusted_labels[fit_rows], C=c, num_classes=k)
            correct += int((model.log_proba(xt[held]).argmax(1) == trusted_labels[held]).sum())
        scores[float(c)] = correct / len(trusted)
    best = max(scores, key=lambda c: (scores[c], -c))
    model = fit_logistic(xt, trusted_labels, C=best, num_classes=k)
    labels = model.log_proba(xs).argmax(1)
    labels[trusted] = trusted_labels
    return PeerResult(labels, {"C": best, "trusted_cv_acc": scores}, time.perf_counter() - t0)


def fc_logistic(features, noisy, trusted, trusted_labels, *, C: Sequence[float] = C_GRID,
                prior: float = 0.5, score: str = "corrected") -> PeerResult:
    """Forward-corrected multinomial logistic regression through the trusted-set noise transition.

    1. ``T[i, j] = P(given = j | clean = i)`` counted on the trusted rows (their clean label
       against their given label), ``prior`` added to every cell (:func:`count_transition`).
    2. For each ``C`` in the grid: fit ``max sum log (softmax(W x) @ T)[given]`` on the
       non-trusted rows (:func:`fit_logistic`), then score it on the held-out trusted rows
       against their clean labels. ``score="corrected"`` scores the relabelling rule itself,
       ``argmax_i p(clean = i | x)·T[i, given]`` with the trusted row's given label;
       ``score="posterior"`` scores ``argmax p(clean | x)``. Ties go to the smaller ``C``.
    3. Refit with the chosen ``C`` on everything: the non-trusted rows through ``T`` with
       their given labels, the trusted rows with their clean labels (no ``T``).
    4. Non-trusted labels: ``argmax_i p(clean = i | x)·T[i, given]``; trusted rows keep theirs.
    """
    t0 = time.perf_counter()
    x, noisy, trusted, trusted_labels, k, mask, base = _start(features, noisy, trusted, trusted_labels)
    xs = _standardise(x)
    T = count_transition(trusted_labels, noisy[trusted], k, prior=prior)
    log_t = np.log(T)
    rest = np.flatnonzero(mask)
    scores, posterior_scores, init = {}, {}, None
    for c in sorted(C):  # strongest regularisation first; each fit starts from the previous
        model = fit_logistic(xs[rest], noisy[rest], C=c, num_classes=k, transition=T, init=init)
        init = model
        logp = model.log_proba(xs[trusted])
        corrected = (logp + log_t[:, noisy[trusted]].T).argmax(1)
        scores[float(c)] = float((corrected == trusted_labels).mean())
        posterior_scores[float(c)] = float((logp.argmax(1) == trusted_labels).mean())
    chosen = scores if score == "corrected" else posterior_scores
    best = max(chosen, key=lambda c: (chosen[c], -c))
    rows = np.concatenate([rest, trusted])
    targets = np.concatenate([noisy[rest], trusted_labels])
    through = np.concatenate([np.ones(len(rest), bool), np.zeros(len(trusted), bool)])
    model = fit_logistic(xs[rows], targets, C=best, num_classes=k, transition=T, through_transition=through)
    logp = model.log_proba(xs)
    labels = (logp + log_t[:, noisy].T).argmax(1)
    labels[trusted] = trusted_labels
    return PeerResult(labels, {"C": best, "trusted_acc": scores, "trusted_posterior_acc": posterior_scores},
                      time.perf_counter() - t0)


#: name → peer function, in the order of the benchmark's table.
PEERS = {
    "given": given,
    "default": dmlp_default,
    "cleanlab": cleanlab_relabel,
    "knn": knn_relabel,
    "trusted-probe": trusted_probe,
    "fc-logistic": fc_logistic,
}
