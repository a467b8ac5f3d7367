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

__all__ = ["minimize_lbfgs", "minimize_lbfgs_batched"]

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


BatchedObjective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def minimize_lbfgs_batched(fun: BatchedObjective, x0: torch.Tensor, *, max_iter: int, history_size: int = 10,
                           tolerance_grad: float = 1e-6, tolerance_change: float = 1e-10,
                           armijo: float = 1e-4, max_backtracks: int = 20) -> torch.Tensor:
    """Minimise ``K`` independent problems at once: ``x0`` is ``(K, ...)`` and ``fun(x)``
    returns ``(losses (K,), gradient like x)``.

    Each problem keeps its own curvature memory, step size, line search and stopping
    test, so its iterates are those it would have alone: no problem's path depends on
    another's values. (One L-BFGS on the *sum* would share the step size and the
    curvature pairs, and a fit meant to hold out some rows would then move with them.)
    Each evaluation of ``fun`` still serves every problem, which is what makes batching
    pay. Same method as :func:`minimize_lbfgs`.
    """
    k = x0.shape[0]
    shape = (k,) + (1,) * (x0.dim() - 1)

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).flatten(1).sum(1)

    x = x0.clone()
    value, grad = fun(x)
    done = torch.zeros(k, dtype=torch.bool, device=x.device)
    steps: list[torch.Tensor] = []
    changes: list[torch.Tensor] = []
    rhos: list[torch.Tensor] = []  # 1/yᵀs per problem; 0 where the pair does not count for it
    gamma = torch.ones(k, dtype=x.dtype, device=x.device)  # each problem's initial Hessian scale
    for iteration in range(max_iter):
        done |= grad.abs().flatten(1).amax(1) <= tolerance_grad
        if bool(done.all()):
            break
        direction = _batched_direction(grad, steps, changes, rhos, gamma, dot, shape)
        slope = dot(grad, direction)
        fresh = slope > -tolerance_change  # not a descent direction: forget that problem's memory
        if bool(fresh.any()):
            for rho in rhos:
                rho.masked_fill_(fresh, 0.0)
            gamma.masked_fill_(fresh, 1.0)
            direction = torch.where(fresh.view(shape), -grad, direction)
            slope = torch.where(fresh, -grad.square().flatten(1).sum(1), slope)
        if iteration == 0:  # no curvature information yet: scale the first step as torch does
            t = (1.0 / grad.abs().flatten(1).sum(1)).clamp(max=1.0)
        else:
            t = torch.ones(k, dtype=x.dtype, device=x.device)
        pending = ~done
        x_new, value_new, grad_new = x.clone(), value.clone(), grad.clone()
        for _ in range(max_backtracks):
            trial = torch.where(pending.view(shape), x + t.view(shape) * direction, x_new)
            trial_value, trial_grad = fun(trial)
            accept = pending & (trial_value <= value + armijo * t * slope)
            x_new = torch.where(accept.view(shape), trial, x_new)
            value_new = torch.where(accept, trial_value, value_new)
            grad_new = torch.where(accept.view(shape), trial_grad, grad_new)
            pending &= ~accept
            if not bool(pending.any()):
                break
            t = torch.where(pending, t * 0.5, t)
        done |= pending  # no decrease along its direction: converged as far as precision allows
        moved = ~done
        step, change = x_new - x, grad_new - grad
        curvature = dot(change, step)
        counts = moved & (curvature > 1e-10)
        if len(steps) == history_size:
            steps.pop(0), changes.pop(0), rhos.pop(0)
        steps.append(step)
        changes.append(change)
        rhos.append(torch.where(counts, 1.0 / curvature.clamp_min(1e-30), torch.zeros_like(curvature)))
        gamma = torch.where(counts, curvature / dot(change, change).clamp_min(1e-30), gamma)
        done |= moved & ((value - value_new).abs() < tolerance_change)
        x = torch.where(moved.view(shape), x_new, x)
        grad = torch.where(moved.view(shape), grad_new, grad)
        value = torch.where(moved, value_new, value)
    return x


def _batched_direction(grad: torch.Tensor, steps: list[torch.Tensor], changes: list[torch.Tensor],
                       rhos: list[torch.Tensor], gamma: torch.Tensor, dot: Callable, shape: tuple) -> torch.Tensor:
    """``−H_k·grad_k`` for every problem ``k`` (two-loop recursion; a pair with ρ = 0 is skipped)."""
    q = -grad
    alphas = []
    for s, y, rho in zip(reversed(steps), reversed(changes), reversed(rhos)):
        alpha = rho * dot(s, q)
        q = q - alpha.view(shape) * y
        alphas.append(alpha)
    q = q * gamma.view(shape)
    for s, y, rho, alpha in zip(steps, changes, rhos, reversed(alphas)):
        beta = rho * dot(y, q)
        q = q + (alpha - beta).view(shape) * s
    return q
