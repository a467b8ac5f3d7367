"""The cross-fitted two-layer network candidate (engine/mlp_head.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.engine.mlp_head import fit_forward_mlp
from dmlp_plugin.engine.posterior import transition_from_pairs
from dmlp_plugin.errors import ConfigError
from dmlp_plugin.noise import make_noisy_labels
from engine_fixtures import gen, one_torch_thread  # noqa: F401


#: The network candidate (off by default) at 256 units and one deal: on these sets it learns
#: the classes and is as stable under a permutation as at its full size, in a fraction of the time.
SMALL = dict(mlp_candidate=True, mlp_hidden=256, mlp_repeats=1)


def antipodal_clusters(n: int = 3000, num_classes: int = 4, dim: int = 8, rate: float = 0.3, seed: int = 0):
    """Each class is two clusters at ``±m_k``: every linear score is symmetric about the
    origin, so no linear head can tell the classes apart, while the classes are well separated."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_classes, dim))
    means *= 4.0 / np.linalg.norm(means, axis=1, keepdims=True)
    clean = rng.permutation(np.arange(n) % num_classes)
    sign = rng.choice([-1.0, 1.0], size=(n, 1))
    features = (sign * means[clean] + 0.7 * rng.normal(size=(n, dim))).astype(np.float32)
    given = make_noisy_labels(clean, kind="symmetric", rate=rate, num_classes=num_classes, seed=seed + 1).noisy_labels
    trusted = np.sort(rng.choice(n, 200, replace=False))
    return features, clean.astype(np.int64), given.astype(np.int64), trusted


def test_the_network_learns_classes_that_no_linear_head_can():
    x, clean, given, trusted = antipodal_clusters(rate=0.5)
    kwargs = dict(val_indices=trusted, val_labels=clean[trusted], num_classes=4, seed=0)
    config = PurifyConfig(rounds=2, **SMALL)
    with_mlp = purify_dataset(x, given, **kwargs, config=config)
    linear = purify_dataset(x, given, **kwargs, config=config.replace(mlp_candidate=False))
    nll = with_mlp.metadata["candidate_nll"]
    assert with_mlp.metadata["selected"] == "mlp" == min(nll, key=nll.get)
    assert nll["mlp + logistic"] < min(v for k, v in nll.items() if not k.startswith("mlp"))
    alone = purify_dataset(x, given, **kwargs, config=config.replace(logistic_candidate=False))
    assert "mlp + logistic" not in alone.metadata["candidate_nll"]  # nothing to mix with
    given_acc = float((given == clean).mean())
    assert given_acc < 0.65
    assert linear.accuracy(clean) < given_acc + 0.05  # the linear heads can hardly help here
    assert with_mlp.accuracy(clean) > 0.95 and alone.accuracy(clean) > 0.95  # 0.998


def _network_inputs(x, clean, given, trusted):
    """``(rest, features, given labels, trusted features, T)`` for ``fit_forward_mlp``: the
    non-trusted rows train, ``T`` is counted on the trusted ones."""
    rest = np.setdiff1d(np.arange(len(clean)), trusted)
    xt, yt, val = torch.from_numpy(x[rest]), torch.from_numpy(given[rest]), torch.from_numpy(x[trusted])
    transition = transition_from_pairs(torch.from_numpy(clean[trusted]), torch.from_numpy(given[trusted]), 4)
    return rest, xt, yt, val, transition


def _fit(x: torch.Tensor, given: torch.Tensor, transition: torch.Tensor, val: torch.Tensor, seed: int = 0):
    return fit_forward_mlp(x, given, transition, val, generator=gen(seed), folds=3, hidden=32, epochs=3)


def test_a_rows_prediction_never_sees_its_own_given_label():
    """Cross-fitting: the network that predicts a row never trained on it, so changing that
    row's given label leaves its prediction exactly as it was, and moves other rows'."""
    x, clean, given, trusted = antipodal_clusters(n=600, rate=0.2)
    rest, xt, yt, val, transition = _network_inputs(x, clean, given, trusted)
    scores, val_scores = _fit(xt, yt, transition, val)
    flipped = yt.clone()
    flipped[7] = (flipped[7] + 1) % 4
    scores2, val_scores2 = _fit(xt, flipped, transition, val)
    torch.testing.assert_close(scores2[7], scores[7], rtol=0, atol=0)
    assert not torch.equal(scores2, scores)  # the row trained the networks that predict the others
    assert not torch.equal(val_scores2, val_scores)
    # Log-probabilities, and deterministic for a seed.
    torch.testing.assert_close(scores.exp().sum(1), torch.ones(len(rest)), rtol=0, atol=1e-5)
    again, _ = _fit(xt, yt, transition, val)
    assert torch.equal(again, scores)


def test_the_network_is_left_out_where_it_cannot_run():
    x, clean, given, trusted = antipodal_clusters(n=400)
    kwargs = dict(val_indices=trusted[:40], val_labels=clean[trusted[:40]], num_classes=4, seed=0)
    paper = purify_dataset(x, given, **kwargs, config=PurifyConfig.paper(epochs=2))
    assert paper.metadata.get("selected") is None  # paper mode has no candidates at all
    assert "candidates" not in paper.metadata
    # 360 training rows cannot fill 200 folds of two rows: left out, with a warning saying why.
    with pytest.warns(RuntimeWarning, match="network candidate was left out"):
        few = purify_dataset(x, given, **kwargs, config=PurifyConfig(rounds=1, mlp_candidate=True, mlp_folds=200))
    assert not {"mlp", "mlp + logistic"} & set(few.metadata["candidate_nll"])
    assert "network candidate" not in few.timings and "logistic candidate" in few.timings
    with pytest.raises(ConfigError, match="mlp_folds must be an integer >= 2"):
        PurifyConfig(mlp_folds=1)
    with pytest.raises(ValueError, match="at least two rows per fold"):
        _fit(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), torch.eye(4), torch.zeros(2, 3))


def test_permuting_the_samples_moves_the_network_candidate_only_as_a_reseed_would():
    """The folds and batches follow the rows' order, so a permutation trains other networks:
    the labels are not permuted exactly, but they are as accurate and nearly all the same."""
    x, clean, given, trusted = antipodal_clusters(rate=0.5, seed=3)
    config = PurifyConfig(rounds=2, logistic_candidate=False, **SMALL)
    perm = np.random.default_rng(9).permutation(len(clean))
    inverse = np.argsort(perm)
    base = purify_dataset(x, given, val_indices=trusted, val_labels=clean[trusted], config=config)
    shuffled = purify_dataset(x[perm], given[perm], val_indices=inverse[trusted], val_labels=clean[trusted],
                              config=config)
    assert base.metadata["selected"] == shuffled.metadata["selected"] == "mlp"
    assert (shuffled.labels[inverse] == base.labels).mean() > 0.97
    assert abs(shuffled.accuracy(clean[perm]) - base.accuracy(clean)) < 0.02


def test_repeats_average_fresh_deals_and_each_rows_networks_never_saw_it():
    """``repeats=2`` is the mean of the probabilities of two deals drawn one after the other
    from the same generator, and a row's prediction still ignores its own given label."""
    x, clean, given, trusted = antipodal_clusters(n=600, rate=0.2, seed=4)
    rest, xt, yt, val, transition = _network_inputs(x, clean, given, trusted)
    kwargs = dict(folds=3, hidden=32, epochs=3)
    g = gen(0)
    first = fit_forward_mlp(xt, yt, transition, val, generator=g, **kwargs)
    second = fit_forward_mlp(xt, yt, transition, val, generator=g, **kwargs)
    both = fit_forward_mlp(xt, yt, transition, val, generator=gen(0), repeats=2, **kwargs)
    for k in range(2):  # training rows, then trusted rows
        assert not torch.allclose(first[k], second[k])  # a fresh deal and fresh weights
        mean = ((first[k].exp() + second[k].exp()) / 2).log()
        torch.testing.assert_close(both[k], mean, rtol=0, atol=1e-6)
    _assert_ignores_own_label(lambda labels: fit_forward_mlp(xt, labels, transition, val, generator=gen(0),
                                                             repeats=2, **kwargs), yt, both, row=11, shift=2)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        fit_forward_mlp(xt, yt, transition, val, generator=gen(0), repeats=0, **kwargs)
    with pytest.raises(ConfigError, match="mlp_repeats must be a positive integer"):
        PurifyConfig(mlp_repeats=0)


def _assert_ignores_own_label(fit, labels, fitted, *, row: int, shift: int) -> None:
    """Cross-fitting: changing one row's given label leaves that row's prediction exactly as
    ``fitted`` (``fit(labels)``) had it, and changes the other rows'."""
    flipped = labels.clone()
    flipped[row] = (flipped[row] + shift) % 4
    again = fit(flipped)
    torch.testing.assert_close(again[0][row], fitted[0][row], rtol=0, atol=0)
    assert not torch.equal(again[0], fitted[0])


def test_a_second_hidden_layer_learns_the_classes_and_still_never_sees_a_rows_label():
    x, clean, given, trusted = antipodal_clusters(n=2000, rate=0.3, seed=5)
    rest, xt, yt, val, transition = _network_inputs(x, clean, given, trusted)
    kwargs = dict(folds=3, hidden=64, epochs=20)
    one = fit_forward_mlp(xt, yt, transition, val, generator=gen(0), **kwargs)
    two = fit_forward_mlp(xt, yt, transition, val, generator=gen(0), layers=2, **kwargs)
    assert not torch.allclose(one[0], two[0])  # a different network
    # Classes no linear head can separate: the deeper network learns them from 30% noisy labels.
    assert (two[0].argmax(1).numpy() == clean[rest]).mean() > 0.95  # 0.98
    assert (two[1].argmax(1).numpy() == clean[trusted]).mean() > 0.9
    _assert_ignores_own_label(lambda labels: fit_forward_mlp(xt, labels, transition, val, generator=gen(0),
                                                             layers=2, **kwargs), yt, two, row=5, shift=1)
    with pytest.raises(ValueError, match="layers must be >= 1"):
        fit_forward_mlp(xt, yt, transition, val, generator=gen(0), layers=0, **kwargs)
    with pytest.raises(ConfigError, match="mlp_layers must be a positive integer"):
        PurifyConfig(mlp_layers=0)


def test_mlp_layers_reaches_the_network_candidate():
    x, clean, given, trusted = antipodal_clusters(n=2000, rate=0.3, seed=6)
    kwargs = dict(val_indices=trusted, val_labels=clean[trusted], num_classes=4, seed=0)
    config = PurifyConfig(rounds=2, mlp_candidate=True, mlp_hidden=64, mlp_epochs=20, mlp_repeats=1)
    assert config.mlp_layers == 2  # the default
    one = purify_dataset(x, given, **kwargs, config=config.replace(mlp_layers=1))
    two = purify_dataset(x, given, **kwargs, config=config)
    assert one.metadata["candidate_nll"]["mlp"] != two.metadata["candidate_nll"]["mlp"]
    assert two.metadata["selected"].startswith("mlp") and two.accuracy(clean) > 0.9


def test_bfloat16_products_train_the_same_network_to_within_rounding():
    x, clean, given, trusted = antipodal_clusters(n=2000, rate=0.3, seed=7)
    rest, xt, yt, val, transition = _network_inputs(x, clean, given, trusted)
    kwargs = dict(folds=3, hidden=64, epochs=20, layers=2)
    full = fit_forward_mlp(xt, yt, transition, val, generator=gen(0), **kwargs)
    half = fit_forward_mlp(xt, yt, transition, val, generator=gen(0), precision=torch.bfloat16, **kwargs)
    assert half[0].dtype == torch.float32  # weights, loss and predictions stay float32
    assert not torch.equal(full[0], half[0])  # the products did run in bfloat16
    # ... and learned the same classes: the two agree on nearly every row.
    agree = (full[0].argmax(1) == half[0].argmax(1)).float().mean().item()
    assert agree > 0.97
    right = [(out[0].argmax(1).numpy() == clean[rest]).mean() for out in (full, half)]
    assert min(right) > 0.93 and abs(right[0] - right[1]) < 0.01, right
    with pytest.raises(ValueError, match="precision must be"):
        fit_forward_mlp(xt, yt, transition, val, generator=gen(0), precision=torch.float16, **kwargs)


def test_mlp_precision_auto_follows_the_hardware_and_bad_values_are_refused(monkeypatch):
    from dmlp_plugin import device as device_module

    cpu = torch.device("cpu")
    assert device_module.resolve_precision("float32", cpu) == "float32"
    assert device_module.resolve_precision("bfloat16", cpu) == "bfloat16"
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(device_module, "native_bfloat16", lambda dev, native=native: native)
        assert device_module.resolve_precision("auto", cpu) == expected
    assert PurifyConfig().mlp_precision == "auto" and not PurifyConfig().mlp_candidate  # the network is opt-in
    with pytest.raises(ConfigError, match="mlp_precision must be one of"):
        PurifyConfig(mlp_precision="float16")
