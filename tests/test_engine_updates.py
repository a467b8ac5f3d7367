"""Label updates (Adam/SGD, simplex projection), temperature fitting and the noise posterior
(through the default pipeline's one calibrator, ``engine/calibrate.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmlp_plugin.engine.label_update import LabelOptimizer, project_simplex
from dmlp_plugin.engine.ls_head import fit_temperature
from dmlp_plugin import PurifyConfig
from dmlp_plugin.engine import Problem
from dmlp_plugin.engine.calibrate import Calibrator
from dmlp_plugin.engine.ls_head import trusted_folds
from dmlp_plugin.engine.posterior import transition_from_pairs
from engine_fixtures import assert_on_simplex, gen, one_torch_thread  # noqa: F401  (autouse)


# -- LabelOptimizer --------------------------------------------------------------------------

@pytest.mark.parametrize("weight_decay", [0.0, 3e-4, 0.1])
@pytest.mark.parametrize("betas", [(0.5, 0.999), (0.9, 0.99)])
def test_adam_matches_torch_adam_step_for_step(weight_decay, betas):
    g = gen(0)
    start = torch.randn(5, 7, 3, generator=g, dtype=torch.float64)
    ours = start.clone()
    opt = LabelOptimizer(ours, kind="adam", lr=0.05, betas=betas, weight_decay=weight_decay, eps=1e-8)
    ref = start.clone().requires_grad_()
    ref_opt = torch.optim.Adam([ref], lr=0.05, betas=betas, weight_decay=weight_decay, eps=1e-8)
    for step in range(25):
        grad = torch.randn(start.shape, generator=g, dtype=torch.float64) * (10.0 ** (step % 3 - 1))
        opt.step(grad.clone())  # step() may use the gradient's memory as scratch
        ref.grad = grad
        ref_opt.step()
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-12, atol=1e-12, msg=f"step {step}")
    assert not torch.equal(ours, start)


def test_adam_updates_labels_in_place_and_reset_restarts_moments():
    labels = torch.zeros(4, 3, dtype=torch.float64)
    opt = LabelOptimizer(labels, kind="adam", lr=0.1)
    grad = torch.ones(4, 3, dtype=torch.float64)
    opt.step(grad)
    # first Adam step moves every coordinate by lr against the gradient's sign
    torch.testing.assert_close(labels, torch.full((4, 3), -0.1, dtype=torch.float64))
    opt.reset_state()
    assert opt.steps == 0 and not opt.exp_avg.any() and not opt.exp_avg_sq.any()
    opt.step(-grad)
    torch.testing.assert_close(labels, torch.zeros(4, 3, dtype=torch.float64))


@pytest.mark.parametrize("weight_decay", [0.0, 0.2])
def test_sgd_is_a_plain_gradient_step(weight_decay):
    g = gen(1)
    labels = torch.randn(6, 4, generator=g, dtype=torch.float64)
    before = labels.clone()
    grad = torch.randn(6, 4, generator=g, dtype=torch.float64)
    opt = LabelOptimizer(labels, kind="sgd", lr=0.3, weight_decay=weight_decay)
    opt.step(grad.clone())  # step() may use the gradient as scratch
    torch.testing.assert_close(labels, before - 0.3 * (grad + weight_decay * before))


# -- simplex projection ----------------------------------------------------------------------

def bisection_projection(v: np.ndarray, iters: int = 200) -> np.ndarray:
    """Projection onto the simplex by its optimality condition: ``x = max(v − θ, 0)``
    with ``θ`` the root of ``Σ max(v − θ, 0) = 1``, found by bisection (no sorting)."""
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(iters):
        mid = (lo + hi) / 2
        if np.maximum(v - mid, 0).sum() > 1:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - (lo + hi) / 2, 0)


SPECIAL_ROWS = [
    [0.2, 0.3, 0.5],  # already on the simplex
    [1.0, 0.0, 0.0],  # a vertex
    [-5.0, -5.0, -5.0],  # all negative, tied
    [10.0, 10.0, -3.0],  # large ties
    [0.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [3.0, -1.0, 0.2],
]


def random_simplex_points(shape, generator: torch.Generator) -> torch.Tensor:
    """Uniform (Dirichlet(1)) points on the simplex over the last dimension, float64."""
    e = -torch.rand(shape, generator=generator, dtype=torch.float64).log()
    return e / e.sum(-1, keepdim=True)


def test_projection_equals_bisection_reference_and_lies_on_simplex():
    g = gen(2)
    random_rows = torch.randn(300, 6, generator=g, dtype=torch.float64) * torch.tensor(
        [0.1, 1.0, 5.0]).repeat_interleave(100).view(-1, 1).double()
    for rows in (random_rows, torch.tensor(SPECIAL_ROWS, dtype=torch.float64)):
        projected = project_simplex(rows)
        assert_on_simplex(projected, atol=1e-12)
        expected = np.stack([bisection_projection(r) for r in rows.numpy()])
        np.testing.assert_allclose(projected.numpy(), expected, atol=1e-10)


def test_projection_is_nearest_simplex_point():
    g = gen(3)
    v = torch.randn(50, 5, generator=g, dtype=torch.float64) * 2
    x = project_simplex(v)
    others = random_simplex_points((2000, 5), g)
    best_other = torch.cdist(v, others).min(1).values
    assert bool(((v - x).norm(dim=1) <= best_other + 1e-12).all())


def test_points_on_simplex_are_unchanged_and_batches_keep_their_shape():
    g = gen(4)
    on = random_simplex_points((2, 9, 3, 7), g)
    on[0, 0, 0] = torch.tensor([0, 0, 1, 0, 0, 0, 0])  # a vertex
    out = project_simplex(on)
    assert out.shape == on.shape
    torch.testing.assert_close(out, on, rtol=0, atol=1e-12)
    shifted = on + torch.randn(on.shape, generator=g, dtype=torch.float64)
    flat = project_simplex(shifted.reshape(-1, 7)).reshape(shifted.shape)
    torch.testing.assert_close(project_simplex(shifted), flat)


# -- temperature -----------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [0.3, 2.5, 12.0])
def test_fit_temperature_recovers_the_scale_of_the_generating_softmax(scale):
    g = gen(5)
    scores = torch.randn(20000, 4, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(scale * scores, -1), 1, generator=g).squeeze(1)
    fitted, nll = fit_temperature(scores, labels)
    assert abs(float(fitted) / scale - 1) < 0.1
    at_truth = torch.nn.functional.cross_entropy(scale * scores, labels)
    assert float(nll) <= float(at_truth) + 1e-9  # the fit's NLL is at least as good as the truth's
    torch.testing.assert_close(nll, torch.nn.functional.cross_entropy(fitted * scores, labels))


def test_fit_temperature_uses_the_log_prior_offset():
    g = gen(6)
    scores = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    log_prior = torch.log(torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64))
    labels = torch.multinomial(torch.softmax(2.0 * scores + log_prior, -1), 1, generator=g).squeeze(1)
    with_prior, _ = fit_temperature(scores, labels, log_prior)
    assert abs(float(with_prior) / 2.0 - 1) < 0.1


# -- transition and posterior ----------------------------------------------------------------

def test_transition_from_pairs_counts_exactly():
    rng = np.random.default_rng(7)
    clean = rng.integers(0, 4, 500)
    given = np.where(rng.random(500) < 0.3, rng.integers(0, 4, 500), clean)
    counts = np.zeros((4, 4))
    np.add.at(counts, (clean, given), 1)
    raw = transition_from_pairs(torch.from_numpy(clean), torch.from_numpy(given), 4, smoothing=0.0)
    np.testing.assert_allclose(raw.numpy(), counts / counts.sum(1, keepdims=True), rtol=1e-6)
    smooth = transition_from_pairs(torch.from_numpy(clean), torch.from_numpy(given), 4, smoothing=2.0)
    expected = (counts + 0.5) / (counts + 0.5).sum(1, keepdims=True)
    np.testing.assert_allclose(smooth.numpy(), expected, rtol=1e-6)


def test_transition_row_of_unseen_class_is_uniform_with_smoothing():
    t = transition_from_pairs(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 3)
    torch.testing.assert_close(t[2], torch.full((3,), 1 / 3))


#: The plain posterior p(y | x, ỹ) ∝ p(y | x)·T[y, ỹ]: T as counted, no weight, no offsets.
PLAIN = PurifyConfig(transition_shrinkage=False, transition_em_steps=0, fit_transition_weight=False,
                     fit_posterior_offsets=False)


def calibrated(scores: torch.Tensor, given: torch.Tensor, val_scores: torch.Tensor, val_labels: torch.Tensor,
               val_given: torch.Tensor) -> tuple[torch.Tensor, Calibrator]:
    """The posterior the default pipeline's calibrator gives rows with classifier scores
    ``scores`` and given labels ``given``, calibrated on trusted rows with held-out scores
    ``val_scores`` (the features only fix the device and dtype)."""
    c = scores.shape[1]
    problem = Problem.build(torch.zeros(len(given), 1), torch.nn.functional.one_hot(given, c).float(),
                            torch.zeros(len(val_labels), 1), val_labels, val_given=val_given)
    folds = trusted_folds(len(val_labels), PLAIN.trusted_folds, gen(9), torch.device("cpu"))
    calibrator = Calibrator(problem, PLAIN, folds)
    return calibrator.posterior("candidate", [(scores, val_scores)]).posterior, calibrator


def test_posterior_keeps_the_given_label_when_the_classifier_is_uniform():
    val_labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    val_given = val_labels.clone()
    val_given[[0, 1, 10, 11, 12, 20]] = torch.tensor([1, 2, 0, 0, 2, 1])  # some noise, T diagonal-heavy
    given = torch.tensor([0, 1, 2, 1, 0])
    post, calibrator = calibrated(torch.zeros(5, 3), given, torch.zeros(30, 3), val_labels, val_given)
    t = calibrator.transition
    torch.testing.assert_close(t, transition_from_pairs(val_labels, val_given, 3))  # T counted on the trusted pairs
    assert torch.equal(post.argmax(1), given)
    expected = t[:, given].T / t[:, given].T.sum(1, keepdim=True)  # ∝ T[y, ỹ] over y
    torch.testing.assert_close(post, expected)
    assert_on_simplex(post)


def noisy_trusted_rows(flip: float, *, n: int = 20000, seed: int = 0):
    """Trusted rows whose true label is drawn from a calibrated two-class classifier
    (``s = log p(y | x)``) and whose given label is flipped with probability ``flip``: the
    fitted temperature is then about 1, so the posterior is ``p(y | x)·T[y, ỹ]``."""
    g = gen(seed)
    scores = 2.5 * torch.randn(n, 2, generator=g)
    clean = torch.multinomial(scores.softmax(1), 1, generator=g).squeeze(1)
    given = torch.where(torch.rand(n, generator=g) < flip, 1 - clean, clean)
    return scores, clean, given


def test_posterior_flips_on_strong_evidence_only_when_labels_are_noisy():
    given = torch.tensor([0])
    scores = torch.tensor([[0.2, 0.8]]).log()
    flips = {}
    for name, rate in (("reliable", 0.05), ("noisy", 0.45)):
        post, _ = calibrated(scores, given, *noisy_trusted_rows(rate))
        flips[name] = int(post.argmax())
    assert flips == {"reliable": 0, "noisy": 1}
