"""The engine's own L-BFGS (used instead of torch.optim to avoid importing torch._dynamo)."""

from __future__ import annotations

import torch

from dmlp_plugin.engine.lbfgs import minimize_lbfgs
from engine_fixtures import gen


def test_reaches_the_minimum_of_a_quadratic():
    g = gen(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, 2, 30, dtype=torch.float64)) @ q.T  # condition 100
    b = torch.randn(30, generator=g, dtype=torch.float64)
    values = []

    def fun(x):
        values.append(float(0.5 * x @ a @ x - b @ x))
        return torch.tensor(values[-1], dtype=torch.float64), a @ x - b

    x = minimize_lbfgs(fun, torch.zeros(30, dtype=torch.float64), max_iter=300, tolerance_grad=1e-9,
                       tolerance_change=0.0)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=0, atol=1e-6)


def test_rosenbrock_from_the_textbook_start():
    """Non-convex: curvature pairs with yᵀs ≤ 0 must be skipped, not used."""

    def fun(v):
        x, y = v[0], v[1]
        loss = (1 - x) ** 2 + 100 * (y - x * x) ** 2
        grad = torch.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
        return loss, grad

    x = minimize_lbfgs(fun, torch.tensor([-1.2, 1.0], dtype=torch.float64), max_iter=200,
                       tolerance_grad=1e-10, tolerance_change=0.0)
    torch.testing.assert_close(x, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-6)


def test_more_iterations_never_end_higher():
    """Runs with max_iter = 1, 2, ... are prefixes of each other (deterministic), so the
    loss at the returned point must fall or stay with each extra iteration."""
    g = gen(1)
    x_data = torch.randn(200, 5, generator=g, dtype=torch.float64)
    y = (x_data @ torch.randn(5, generator=g, dtype=torch.float64) > 0).double()

    def fun(w):  # logistic regression, a smooth convex objective
        z = x_data @ w
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
        return loss, x_data.T @ (torch.sigmoid(z) - y) / len(y)

    start = torch.zeros(5, dtype=torch.float64)
    losses = [float(fun(minimize_lbfgs(fun, start, max_iter=k))[0]) for k in range(0, 9)]
    assert losses[0] == float(fun(start)[0])  # zero iterations: the start itself
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.5 * losses[0]


def test_batched_problems_follow_the_paths_they_would_alone():
    """Three least-squares problems of different conditioning, batched: each result equals
    that problem minimised on its own (same iterations), and the optimum when run long."""
    from dmlp_plugin.engine.lbfgs import minimize_lbfgs_batched

    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 8, 5, generator=g, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.2]).view(3, 1, 1).double()
    b = torch.randn(3, 8, 1, generator=g, dtype=torch.float64)

    def batched(x):
        r = a @ x - b
        return 0.5 * r.square().sum((1, 2)), a.transpose(1, 2) @ r

    x0 = torch.zeros(3, 5, 1, dtype=torch.float64)
    together = minimize_lbfgs_batched(batched, x0, max_iter=4)
    for k in range(3):
        def alone(x, k=k):
            losses, grad = batched(x.expand(3, -1, -1).clone())
            return losses[k:k + 1], grad[k:k + 1]
        torch.testing.assert_close(minimize_lbfgs_batched(alone, x0[k:k + 1], max_iter=4)[0], together[k])
    solved = minimize_lbfgs_batched(batched, x0, max_iter=200, tolerance_grad=1e-12, tolerance_change=0.0)
    exact = torch.linalg.lstsq(a, b).solution
    torch.testing.assert_close(solved, exact, rtol=1e-6, atol=1e-8)
