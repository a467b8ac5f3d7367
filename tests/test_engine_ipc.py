"""IPC: the batched closed form and hand-written gradients against plain torch references."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from dmlp_plugin.engine.ipc import IPCLossWeights, factor, ipc_loss_and_grad, partition
from engine_fixtures import gen, one_torch_thread  # noqa: F401  (autouse)

DIM, CLASSES, NUM_VAL = 6, 4, 30


def random_problem(n: int, batch_size: int, seed: int = 0):
    """Well-conditioned float64 features and soft labels, cut into batches (all > DIM rows)."""
    g = gen(seed)
    features = torch.randn(n, DIM, generator=g, dtype=torch.float64)
    labels = torch.softmax(3 * torch.randn(n, CLASSES, generator=g, dtype=torch.float64), -1)
    index = partition(n, batch_size, generator=g)
    return features, labels, index


def real_rows(index: torch.Tensor, k: int) -> torch.Tensor:
    return index[k][index[k] >= 0]


# -- partition -------------------------------------------------------------------------------

@pytest.mark.parametrize("n,batch_size,num_batches,width", [
    (50, 20, 3, 17), (49000, 7000, 7, 7000), (7, 10, 1, 7), (10, 3, 4, 3), (100, 100, 1, 100),
])
def test_partition_keeps_every_index_once_in_balanced_padded_batches(n, batch_size, num_batches, width):
    index = partition(n, batch_size, generator=gen(0))
    assert index.shape == (num_batches, width)
    assert index.dtype == torch.long
    real = index[index >= 0]
    assert torch.equal(real.sort().values, torch.arange(n))
    assert set(index[index < 0].tolist()) <= {-1}
    sizes = (index >= 0).sum(1)
    assert int(sizes.max() - sizes.min()) <= 1
    assert int(sizes.max()) <= batch_size
    # padding only at the end of a batch, at most one row each
    for row in index:
        pad = (row < 0).nonzero().flatten().tolist()
        assert pad == list(range(width - len(pad), width)) and len(pad) <= 1


def test_partition_is_deterministic_under_a_seeded_generator_and_shuffles():
    a, b = partition(1000, 300, generator=gen(5)), partition(1000, 300, generator=gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, partition(1000, 300, generator=gen(6)))
    ordered = partition(1000, 300, shuffle=False)
    assert torch.equal(ordered[ordered >= 0], torch.arange(1000))
    assert not torch.equal(a[a >= 0], torch.arange(1000))


# -- closed form -----------------------------------------------------------------------------

@pytest.mark.parametrize("ridge", [0.0, 1e-12])
@pytest.mark.parametrize("n,batch_size", [(60, 20), (50, 20), (23, 100)])
def test_solver_times_labels_equals_lstsq_per_batch(ridge, n, batch_size):
    features, labels, index = random_problem(n, batch_size)
    batches = factor(features, index, ridge=ridge)
    assert batches.solver.dtype == torch.float64
    weights = batches.solver @ batches.gather(labels)
    for k in range(index.shape[0]):
        rows = real_rows(index, k)
        expected = torch.linalg.lstsq(features[rows], labels[rows]).solution
        torch.testing.assert_close(weights[k], expected, rtol=1e-9, atol=1e-10)


def test_padded_batch_layout_round_trips_and_padding_is_zero():
    features, labels, index = random_problem(50, 20)
    batches = factor(features, index, ridge=1e-3)
    assert (index < 0).any(), "the case needs a padded batch"
    laid = batches.gather(labels)
    assert bool((laid[index < 0] == 0).all())
    assert bool((batches.features[index < 0] == 0).all())
    assert bool((batches.solver.transpose(1, 2)[index < 0] == 0).all())
    torch.testing.assert_close(batches.counts.flatten(), (index >= 0).sum(1).to(torch.float64))
    assert torch.equal(batches.scatter(laid, 50), labels)


def test_ridge_is_relative_to_the_mean_diagonal():
    features, labels, index = random_problem(40, 40)
    ridge = 0.1
    batches = factor(features * 1000.0, index, ridge=ridge)
    f = features * 1000.0
    gram = f.T @ f
    lam = ridge * gram.diagonal().mean()
    expected = torch.linalg.solve(gram + lam * torch.eye(DIM, dtype=torch.float64), f.T @ labels)
    torch.testing.assert_close((batches.solver @ batches.gather(labels))[0], expected)


def test_batch_smaller_than_dimension_warns_and_still_factors():
    g = gen(1)
    features = torch.randn(12, 8, generator=g, dtype=torch.float64)
    index = partition(12, 4, generator=g)  # three batches of 4 rows for 8 dims
    with pytest.warns(RuntimeWarning, match="smaller than the feature dimension 8"):
        batches = factor(features, index, ridge=0.0)
    assert bool(torch.isfinite(batches.solver).all())
    # the fallback is ridge 1e-3 relative to the mean diagonal
    rows = real_rows(index, 0)
    f = features[rows]
    gram = f.T @ f
    expected = torch.linalg.solve(gram + 1e-3 * gram.diagonal().mean() * torch.eye(8, dtype=torch.float64), f.T)
    torch.testing.assert_close(batches.solver[0], expected)


def test_no_warning_when_batches_are_larger_than_dimension():
    features, _, index = random_problem(60, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        factor(features, index, ridge=0.0)


# -- gradients against autograd --------------------------------------------------------------

def naive_batch_loss(f: torch.Tensor, y: torch.Tensor, val_f: torch.Tensor, val_y: torch.Tensor,
                     prior: torch.Tensor, ridge: float, w: IPCLossWeights) -> torch.Tensor:
    """The IPC loss of one batch's real rows, written plainly (explicit inverse)."""
    gram = f.T @ f
    lam = ridge * gram.diagonal().mean()
    weights = torch.inverse(gram + lam * torch.eye(f.shape[1], dtype=f.dtype)) @ f.T @ y
    pred = val_f @ weights
    loss = w.ce * torch.nn.functional.cross_entropy(pred, val_y)
    loss = loss + w.mse * ((pred - torch.nn.functional.one_hot(val_y, y.shape[1]).to(f.dtype)) ** 2).sum()
    mean_p = torch.softmax(f @ weights, -1).mean(0)
    kl = (prior * (prior.log() - mean_p.log())).sum()
    return loss + w.prior * kl


WEIGHT_GRID = [IPCLossWeights(ce=ce, mse=mse, prior=pr)
               for ce, mse, pr in itertools.product([0.0, 1.0], [0.0, 0.7], [0.0, 1.0, 2.5])
               if ce or mse or pr]


@pytest.mark.parametrize("weights", WEIGHT_GRID, ids=lambda w: f"ce{w.ce}-mse{w.mse}-prior{w.prior}")
def test_loss_and_grad_equal_autograd_on_naive_per_batch_loss(weights):
    n, ridge = 50, 1e-3  # batches of 17, 17, 16: the last is padded
    features, labels, index = random_problem(n, 20, seed=3)
    g = gen(4)
    val_f = torch.randn(NUM_VAL, DIM, generator=g, dtype=torch.float64)
    val_y = torch.arange(NUM_VAL) % CLASSES
    prior = torch.softmax(torch.randn(CLASSES, generator=g, dtype=torch.float64), 0)
    batches = factor(features, index, ridge=ridge)
    laid = batches.gather(labels)
    laid[index < 0] = 7.0  # junk in padding rows must not matter
    val_onehot = torch.nn.functional.one_hot(val_y, CLASSES).to(torch.float64)
    loss, grad = ipc_loss_and_grad(laid, batches, val_f, val_onehot, prior, weights)
    assert loss.shape == (index.shape[0],) and grad.shape == laid.shape
    for k in range(index.shape[0]):
        rows = real_rows(index, k)
        y = labels[rows].clone().requires_grad_()
        expected = naive_batch_loss(features[rows], y, val_f, val_y, prior, ridge, weights)
        expected.backward()
        torch.testing.assert_close(loss[k], expected.detach(), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(grad[k][: len(rows)], y.grad, rtol=1e-7, atol=1e-10)
    assert bool((grad[index < 0] == 0).all())
    assert grad.abs().max() > 0


def test_float32_gradients_are_close_to_float64():
    features, labels, index = random_problem(60, 30, seed=7)
    val_f = torch.randn(NUM_VAL, DIM, generator=gen(8), dtype=torch.float64)
    val_onehot = torch.nn.functional.one_hot(torch.arange(NUM_VAL) % CLASSES, CLASSES).double()
    prior = torch.full((CLASSES,), 1.0 / CLASSES, dtype=torch.float64)
    b64 = factor(features, index, ridge=1e-3)
    b32 = factor(features.float(), index, ridge=1e-3)
    assert b32.solver.dtype == torch.float32
    l64, g64 = ipc_loss_and_grad(b64.gather(labels), b64, val_f, val_onehot, prior)
    l32, g32 = ipc_loss_and_grad(b32.gather(labels.float()), b32, val_f.float(), val_onehot.float(),
                                 prior.float())
    torch.testing.assert_close(l32.double(), l64, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g32.double(), g64, rtol=1e-3, atol=1e-5 * float(g64.abs().max()))


def test_bfloat16_storage_halves_the_batches_and_keeps_the_gradient_direction():
    """``storage=bfloat16``: features and K in half the bytes, products in bfloat16, while
    losses and gradients come back float32 and close to the float64 reference."""
    g = gen(9)
    features = torch.randn(400, DIM, generator=g, dtype=torch.float64)
    labels = torch.softmax(3 * torch.randn(400, CLASSES, generator=g, dtype=torch.float64), -1)
    index = partition(400, 200, generator=g)
    val_f = torch.randn(NUM_VAL, DIM, generator=g, dtype=torch.float64)
    val_onehot = torch.nn.functional.one_hot(torch.arange(NUM_VAL) % CLASSES, CLASSES).double()
    prior = torch.full((CLASSES,), 1.0 / CLASSES, dtype=torch.float64)
    b64 = factor(features, index, ridge=1e-3)
    b32 = factor(features.float(), index, ridge=1e-3)
    b16 = factor(features.float(), index, ridge=1e-3, storage=torch.bfloat16)
    assert b16.features.dtype == b16.solver.dtype == torch.bfloat16
    assert b16.solver.untyped_storage().nbytes() * 2 == b32.solver.untyped_storage().nbytes()
    assert b16.solver.transpose(1, 2).is_contiguous()
    l64, g64 = ipc_loss_and_grad(b64.gather(labels), b64, val_f, val_onehot, prior)
    l16, g16 = ipc_loss_and_grad(b16.gather(labels.float()), b16, val_f.float(), val_onehot.float(),
                                 prior.float())
    assert l16.dtype == g16.dtype == torch.float32
    torch.testing.assert_close(l16.double(), l64, rtol=2e-2, atol=0)
    cosine = torch.nn.functional.cosine_similarity(g16.double().flatten(), g64.flatten(), dim=0)
    assert cosine > 0.999, cosine
    relative = (g16.double() - g64).norm() / g64.norm()
    assert 1e-5 < relative < 3e-2, relative  # rounded (so bfloat16 really ran), yet close
    assert bool((g16[index < 0] == 0).all())
