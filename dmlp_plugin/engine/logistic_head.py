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
on the host in its line search, so it runs once after the epoch loop, never inside it.
"""

from __future__ import annotations

import torch

__all__ = ["fit_forward_logistic", "loss_and_grad"]


def fit_forward_logistic(
    features: torch.Tensor,
    given: torch.Tensor,
    transition: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    fold_masks: list[torch.Tensor],
    *,
    trusted_weight: float = 2.0,
    weight_decay: float = 5e-3,
    max_iter: int = 50,
    refit_iter: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the head; return training-row scores and cross-fitted trusted-row scores.

    Parameters
    ----------
    features : (N, d) float
    given : (N,) long
        Given (noisy) labels of the training rows.
    transition : (C, C)
        ``T[y, ỹ] = P(ỹ | y)``, rows on the simplex.
    val_features : (V, d)
    val_labels : (V,) long
        Clean labels of the trusted rows.
    fold_masks : list of (V,) bool
        Folds of the trusted set: each fold's scores come from a refit without it
        (warm-started from the full fit), so calibrating on them is honest.
    trusted_weight, weight_decay : float
    max_iter : int
        L-BFGS iterations of the full fit.
    refit_iter : int, optional
        Iterations of each warm-started refit (default ``max_iter // 5``): dropping a
        fifth of the trusted rows moves the optimum only a little.

    Returns
    -------
    scores : (N, C)
        Logits of the training rows.
    val_scores : (V, C)
        Cross-fitted logits of the trusted rows.
    """
    # Standardise so that one weight decay means the same on any feature scale.
    mean = features.mean(0)
    scale = (features - mean).pow(2).mean().sqrt().clamp_min(1e-12)
    x = (features - mean) / scale
    xv = (val_features - mean) / scale
    t_given = transition.to(x.dtype).T[given]  # (N, C): T[:, ỹ_i]
    num_classes = transition.shape[0]
    val_onehot = torch.nn.functional.one_hot(val_labels, num_classes).to(x.dtype)

    def fit(trusted: torch.Tensor, init: torch.Tensor | None, iters: int) -> torch.Tensor:
        xt, yt = xv[trusted], val_onehot[trusted]
        params = (torch.zeros(x.shape[1] + 1, num_classes, dtype=x.dtype, device=x.device)
                  if init is None else init.clone())
        params.requires_grad_(True)
        optimizer = torch.optim.LBFGS([params], lr=1.0, max_iter=iters, history_size=10,
                                      line_search_fn="strong_wolfe", tolerance_grad=1e-6,
                                      tolerance_change=1e-10)

        def closure() -> torch.Tensor:
            loss, params.grad = loss_and_grad(params.detach(), x, t_given, xt, yt,
                                              trusted_weight=trusted_weight,
                                              weight_decay=weight_decay)
            return loss

        optimizer.step(closure)
        return params.detach()

    everyone = torch.ones(xv.shape[0], dtype=torch.bool, device=x.device)
    full = fit(everyone, None, max_iter)
    scores = x @ full[:-1] + full[-1]
    val_scores = torch.empty(xv.shape[0], num_classes, dtype=x.dtype, device=x.device)
    for mask in fold_masks:
        refit = fit(~mask, full, refit_iter or max(1, max_iter // 5))
        val_scores[mask] = xv[mask] @ refit[:-1] + refit[-1]
    return scores, val_scores


def loss_and_grad(params: torch.Tensor, x: torch.Tensor, t_given: torch.Tensor, xt: torch.Tensor,
                  yt: torch.Tensor, *, trusted_weight: float,
                  weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's objective and its gradient with respect to ``params = [W; b]``.

    ``x`` (N, d) training rows with ``t_given[i] = T[:, ỹ_i]``; ``xt`` (V, d) trusted rows
    with one-hot clean labels ``yt``. The training rows' gradient on the scores is
    ``p − q``, with ``q ∝ p·T[:, ỹ]`` the label posterior.
    """
    w, b = params[:-1], params[-1]
    denom = x.shape[0] + trusted_weight * xt.shape[0]
    p = torch.softmax(x @ w + b, 1)
    mixed = (p * t_given).sum(1).clamp_min(1e-30)  # P(ỹ_i | x_i)
    d_scores = p - p * t_given / mixed.unsqueeze(1)
    log_pv = torch.log_softmax(xt @ w + b, 1)
    d_val = (log_pv.exp() - yt) * trusted_weight
    loss = (-mixed.log().sum() - trusted_weight * (log_pv * yt).sum()) / denom
    loss = loss + weight_decay * w.pow(2).sum()
    grad = torch.empty_like(params)
    grad[:-1] = (x.T @ d_scores + xt.T @ d_val) / denom + 2 * weight_decay * w
    grad[-1] = (d_scores.sum(0) + d_val.sum(0)) / denom
    return loss, grad
