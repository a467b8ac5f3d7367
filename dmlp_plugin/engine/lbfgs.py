"""A small full-batch L-BFGS for objectives that return their own gradient.

``torch.optim.LBFGS`` would do, but constructing any ``torch.optim`` optimizer imports
``torch._dynamo`` on first use, which costs about a second per process: a third of a
whole purification of CIFAR-10. The objectives here are smooth and cheap to evaluate
exactly, so the textbook method suffices: the two-loop recursion for the direction
(Nocedal & Wright, Algorithm 7.4) and a backtracking line search with the Armijo
condition. Curvature pairs with ``yᵀs ≤ 1e-10`` are skipped, as torch does, so
non-convex objectives (the forward-corrected likelihood is one) stay safe.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["minimize_lbfgs"]

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def minimize_lbfgs(fun: Objective, x0: torch.Tensor, *, max_iter: int, history_size: int = 10,
                   tolerance_grad: float = 1e-6, tolerance_change: float = 1e-10,
                   armijo: float = 1e-4, max_backtracks: int = 20) -> torch.Tensor:
    """Minimise ``fun`` from ``x0``; ``fun(x)`` returns ``(loss 0-d tensor, gradient like x)``.

    Stops after ``max_iter`` iterations, when the largest gradient entry is at most
    ``tolerance_grad``, or when an iteration changes the loss by less than
    ``tolerance_change``. Returns the best point found (a new tensor).
    """
    x = x0.clone()
    loss, grad = fun(x)
    value = float(loss)
    steps: list[torch.Tensor] = []
    changes: list[torch.Tensor] = []
    for iteration in range(max_iter):
        if float(grad.abs().max()) <= tolerance_grad:
            break
        direction = _direction(grad, steps, changes)
        slope = float((grad * direction).sum())
        if slope > -tolerance_change:  # not a descent direction: start the memory afresh
            steps.clear()
            changes.clear()
            direction, slope = -grad, -float(grad.square().sum())
        # The first step has no curvature information: scale it as torch does.
        t = min(1.0, 1.0 / float(grad.abs().sum())) if iteration == 0 else 1.0
        for _ in range(max_backtracks):
            x_new = x + t * direction
            loss_new, grad_new = fun(x_new)
            value_new = float(loss_new)
            if value_new <= value + armijo * t * slope:
                break
            t *= 0.5
        else:
            break  # no decrease along the direction: converged as far as precision allows
        step, change = x_new - x, grad_new - grad
        if float((change * step).sum()) > 1e-10:
            if len(steps) == history_size:
                steps.pop(0)
                changes.pop(0)
            steps.append(step)
            changes.append(change)
        x, grad, previous, value = x_new, grad_new, value, value_new
        if abs(previous - value) < tolerance_change:
            break
    return x


def _direction(grad: torch.Tensor, steps: list[torch.Tensor],
               changes: list[torch.Tensor]) -> torch.Tensor:
    """``−H·grad`` with ``H`` the L-BFGS inverse-Hessian estimate (two-loop recursion)."""
    q = -grad
    if not steps:
        return q
    rhos = [1.0 / float((y * s).sum()) for s, y in zip(steps, changes)]
    alphas = []
    for s, y, rho in zip(reversed(steps), reversed(changes), reversed(rhos)):
        alpha = rho * float((s * q).sum())
        q = q - alpha * y
        alphas.append(alpha)
    y_last = changes[-1]
    q = q * (float((steps[-1] * y_last).sum()) / float(y_last.square().sum()))
    for s, y, rho, alpha in zip(steps, changes, rhos, reversed(alphas)):
        beta = rho * float((y * q).sum())
        q = q + (alpha - beta) * s
    return q
