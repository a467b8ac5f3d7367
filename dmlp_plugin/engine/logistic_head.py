"""A forward-corrected logistic head, fitted once on the given labels (not in the paper).

Where the least-squares head regresses the *current* labels, this head models the
*given* labels through the noise transition measured on the trusted set (forward
correction, Patrini et al., CVPR 2017):

    P(ỹ = k | x) = Σ_y softmax(x·W + b)_y · T[y, k]

and maximises that likelihood on the training rows, plus the clean cross-entropy of the
trusted rows (weight ``trusted_weight``), plus ``weight_decay·‖W‖²``. Its softmax is
then an estimate of ``p(y | x)`` that the noise did not bend, which the posterior
``p(y | x, ỹ) ∝ p(y | x)·T[y, ỹ]`` needs. At low and moderate noise it is the more
accurate classifier on the benchmark features; at high noise the least-squares rounds
win, and the purifier chooses between them by trusted-set log-loss.

The gradient has a closed form: for a training row it is ``p − q`` with ``q`` the label
posterior, for a trusted row ``p − onehot(y)``. The fit is full-batch L-BFGS, which
converges in a few dozen iterations on a 512-dimensional linear model; it reads values
on the host in its line search, so it runs once per pipeline, as a candidate family
(``engine/candidates.py: LogisticPath``).
"""

from __future__ import annotations

import torch

from .lbfgs import minimize_lbfgs_batched
from .rows import FeatureRows, as_rows, column_mean, mean_square, per_row_output
from .softmax import softmax_

__all__ = ["fit_forward_logistic_path", "loss_and_grad"]


def fit_forward_logistic_path(
    features: torch.Tensor | FeatureRows,
    given: torch.Tensor,
    transition: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    fold_masks: list[torch.Tensor],
    *,
    trusted_weight: float = 2.0,
    weight_decays: tuple[float, ...] = (5e-3,),
    max_iter: int = 50,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the head at each weight decay; return training-row scores and cross-fitted
    trusted-row scores, one slice per weight decay.

    Parameters
    ----------
    features : (N, d) float tensor, or :class:`~.rows.FeatureRows` read in chunks
    given : (N,) long
        Given (noisy) labels of the training rows.
    transition : (C, C)
        ``T[y, ỹ] = P(ỹ | y)``, rows on the simplex.
    val_features : (V, d)
    val_labels : (V,) long
        Clean labels of the trusted rows.
    fold_masks : list of (V,) bool
        Folds of the trusted set: each fold's scores come from a fit that never saw it.
        Every fit starts from a fit on the training rows alone (which saw no trusted
        row) and takes ``max_iter // 2`` iterations from there, as its own L-BFGS problem.
    trusted_weight : float
    weight_decays : tuple of float
        The regularisation path: every value gets its full fit and its fold fits, all in
        one L-BFGS (each pass over the training rows serves every head).
    max_iter : int
        L-BFGS iterations of the fit on the training rows alone (half of that for each
        fit that adds trusted rows).

    Returns
    -------
    scores : (G, N, C)
        Logits of the training rows, one slice per weight decay.
    val_scores : (G, V, C)
        Cross-fitted logits of the trusted rows.
    """
    # Standardise so that one weight decay means the same on any feature scale. The
    # shift and scale are folded into the weights (see loss_and_grad) rather than applied
    # to a copy of the features: that copy cost more than the whole fit.
    x, xv = as_rows(features), val_features
    shift = column_mean(x)
    scale = (mean_square(x) - shift.double().square().mean()).clamp_min(1e-24).sqrt().to(x.dtype)
    t_given = transition.to(x.dtype).T[given]  # (N, C): T[:, ỹ_i]
    num_classes = transition.shape[0]
    val_onehot = torch.nn.functional.one_hot(val_labels, num_classes).to(x.dtype)

    buffers: dict[str, torch.Tensor] = {}

    def fit(keep: torch.Tensor, decay: torch.Tensor, init: torch.Tensor, iters: int) -> torch.Tensor:
        """One head per row of ``keep`` (which trusted rows it may use) and of ``decay``, each
        its own L-BFGS problem, so a fold's fit never moves with the rows it holds out."""
        def objective(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return loss_and_grad(p, x, t_given, xv, val_onehot, keep * trusted_weight, weight_decay=decay,
                                 shift=shift, scale=scale, buffers=buffers, per_head=True)

        return minimize_lbfgs_batched(objective, init, max_iter=iters)

    g = len(weight_decays)
    decays = torch.tensor(weight_decays, dtype=x.dtype, device=x.device)
    # First on the training rows alone: a start that has seen no trusted row, so every fit
    # below, the full one and each fold's, is warm-started fairly and in the same way.
    start = fit(torch.zeros(g, xv.shape[0], dtype=x.dtype, device=x.device), decays,
                torch.zeros(g, x.shape[1] + 1, num_classes, dtype=x.dtype, device=x.device), max_iter)
    folds = torch.stack(fold_masks)  # (K, V)
    per_decay = torch.cat([torch.ones(1, xv.shape[0], dtype=torch.bool, device=x.device), ~folds])
    keep = per_decay.repeat(g, 1).to(x.dtype)  # (G·(K+1), V): the full fit, then one per fold
    heads = fit(keep, decays.repeat_interleave(len(per_decay)), start.repeat_interleave(len(per_decay), 0),
                max(1, max_iter // 2))
    w, b = _raw_weights(heads, shift, scale)
    return _path_scores(x, xv, folds, w.view(g, len(per_decay), *w.shape[1:]), b.view(g, len(per_decay), -1))


def _path_scores(x: FeatureRows, xv: torch.Tensor, folds: torch.Tensor, w: torch.Tensor,
                 b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-row scores from each decay's full fit ``w[:, 0]`` (G, N, C), and each trusted
    row's from its own fold's fit ``w[:, 1 + k]`` (G, V, C)."""
    g, num_classes = w.shape[0], w.shape[-1]
    scores = per_row_output(x, (g, x.shape[0], num_classes), x.dtype)
    for lo, hi, chunk in x.chunks():
        torch.baddbmm(b[:, 0].unsqueeze(1), chunk.expand(g, -1, -1), w[:, 0], out=scores[:, lo:hi])
    x.reduce_sum(scores)
    fold_scores = torch.einsum("vd,gkdc->gkvc", xv, w[:, 1:]) + b[:, 1:].unsqueeze(2)  # (G, K, V, C)
    val_scores = (fold_scores * folds.to(x.dtype).view(1, len(folds), -1, 1)).sum(1)
    return scores, val_scores


def loss_and_grad(params: torch.Tensor, x: torch.Tensor | FeatureRows, t_given: torch.Tensor, xt: torch.Tensor,
                  yt: torch.Tensor, row_weights: torch.Tensor, *, weight_decay: float | torch.Tensor,
                  shift: torch.Tensor | None = None, scale: torch.Tensor | float = 1.0,
                  buffers: dict[str, torch.Tensor] | None = None,
                  per_head: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed objective of K heads and its gradient with respect to ``params``.

    ``params`` (K, d+1, C) holds each head's ``[W; b]`` acting on standardised features
    ``(x − shift) / scale``. ``x`` (N, d) are the training rows, unstandardised, with
    ``t_given[i] = T[:, ỹ_i]``; ``xt`` (V, d) the trusted rows with one-hot clean labels
    ``yt``, weighted per head by ``row_weights`` (K, V). Each head's loss is divided by
    its total row weight. ``weight_decay``: one for all heads, or one per head (K,).
    The loss is the heads' sum, or with ``per_head`` each head's own (K,). The training rows' gradient on the scores is ``p − q``, with
    ``q ∝ p·T[:, ỹ]`` the label posterior.

    Scores are laid out (K, C, N) so the softmax runs across rows of length N, which
    is far faster than across many rows of length C. The (K, C, N) work is done in place
    in ``buffers`` (reused across calls when given): a fresh 10 MB tensor per operation
    costs more in page faults than the arithmetic on it.
    """
    k, d1, c = params.shape
    x = as_rows(x)
    n = x.shape[0]
    buffers = {} if buffers is None else buffers
    w_raw, b_raw = _raw_weights(params, shift, scale)  # (K, d, C), (K, C)
    w_rows = w_raw.transpose(1, 2).reshape(k * c, d1 - 1)  # (K·C, d)
    denom = n + row_weights.sum(1)  # (K,)
    loss_train = grad_train = grad_b_train = None
    for lo, hi, chunk in x.chunks():
        m = hi - lo
        # Keyed by size: a short last chunk gets its own buffers rather than resizing the others.
        scores = _buffer(buffers, f"scores{m}", (k * c, m), chunk)
        torch.mm(w_rows, chunk.T, out=scores)
        p = scores.view(k, c, m).add_(b_raw.unsqueeze(-1))
        softmax_(p, 1)  # over classes
        joint = torch.mul(p, t_given[lo:hi].T.unsqueeze(0), out=_buffer(buffers, f"joint{m}", (k, c, m), chunk))
        mixed = joint.sum(1, keepdim=True).clamp_min_(1e-30)  # P(ỹ_i | x_i)
        d_scores = p.sub_(joint.div_(mixed)).div_(denom.view(k, 1, 1))  # (p − q) / denom
        loss_train = _accumulate(loss_train, -mixed.log().sum((1, 2)))
        grad_train = _accumulate(grad_train, d_scores.view(k * c, m) @ chunk)
        grad_b_train = _accumulate(grad_b_train, d_scores.sum(-1))
    if loss_train is None:  # a process that holds no rows (more processes than rows)
        loss_train, grad_train, grad_b_train = (params.new_zeros(shape) for shape in ((k,), (k * c, d1 - 1), (k, c)))
    loss_train, grad_train, grad_b_train = (x.reduce_sum(t.to(x.dtype)) for t in (loss_train, grad_train, grad_b_train))
    log_pv = torch.log_softmax((w_rows @ xt.T).view(k, c, -1) + b_raw.unsqueeze(-1), 1)  # (K, C, V)
    y_rows = yt.T.unsqueeze(0)
    d_val = (log_pv.exp() - y_rows) * (row_weights / denom.unsqueeze(1)).unsqueeze(1)
    w = params[:, :-1]
    head_losses = (loss_train - (log_pv * y_rows * row_weights.unsqueeze(1)).sum((1, 2))) / denom
    if isinstance(weight_decay, torch.Tensor):
        weight_decay = weight_decay.view(k, 1, 1)
    losses = head_losses + (weight_decay * w.pow(2)).sum((1, 2))
    loss = losses if per_head else losses.sum()
    grad_raw = grad_train + d_val.reshape(k * c, -1) @ xt
    grad_b = grad_b_train + d_val.sum(-1)  # (K, C)
    if shift is not None:  # chain rule through x ↦ (x − shift) / scale
        grad_raw = grad_raw - grad_b.reshape(k * c, 1) * shift
    grad = torch.empty_like(params)
    grad[:, :-1] = grad_raw.view(k, c, d1 - 1).transpose(1, 2) / scale + 2 * weight_decay * w
    grad[:, -1] = grad_b
    return loss, grad


def _accumulate(total: torch.Tensor | None, part: torch.Tensor) -> torch.Tensor:
    """A sum over chunks: the one chunk's own value, else accumulated in float64."""
    return part if total is None else total.double() + part.double()


def _buffer(buffers: dict[str, torch.Tensor], name: str, shape: tuple[int, ...],
            like: torch.Tensor) -> torch.Tensor:
    buf = buffers.get(name)
    if buf is None or buf.shape != shape:
        buf = buffers[name] = like.new_empty(shape)
    return buf


def _raw_weights(params: torch.Tensor, shift: torch.Tensor | None,
                 scale: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``(K, d, C)`` and bias ``(K, C)`` that act on unstandardised features."""
    w = params[:, :-1] / scale
    b = params[:, -1]
    if shift is not None:
        b = b - torch.einsum("d,kdc->kc", shift, w)
    return w, b
