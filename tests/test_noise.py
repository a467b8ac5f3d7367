"""Synthetic label noise: each upstream convention against its known expected behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dmlp_plugin.errors import ConfigError, InputError, LabelError, ShapeError
from dmlp_plugin.noise import (CIFAR10_ASYMMETRIC, CIFAR100_COARSE, KINDS, NoiseResult, asymmetric_targets,
                               make_noisy_labels, nominal_transition, transition_from_labels)

N = 20000


def balanced(num_classes: int, n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes)


def within_binomial(observed: float, p: float, n: int, sigmas: float = 5.0) -> bool:
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n) + 1e-12


def features_for(labels: np.ndarray, d: int = 16) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(len(labels), d))


def make(kind: str, labels: np.ndarray, **kw) -> NoiseResult:
    if kind == "asymmetric":
        kw.setdefault("dataset", "cifar10")
    if kind == "instance":
        kw.setdefault("features", features_for(labels))
    return make_noisy_labels(labels, kind=kind, **kw)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_symmetric_dividemix_relabels_int_rate_n_and_may_keep_the_true_class(rate):
    labels = balanced(10)
    res = make_noisy_labels(labels, kind="symmetric", rate=rate, convention="dividemix", seed=3)
    chosen = int(rate * N)
    # The chosen subset draws uniformly over all 10 classes: 9/10 of it ends up wrong.
    assert res.realised_rate * N <= chosen
    assert within_binomial(res.realised_rate * N / chosen, 0.9, chosen)
    assert res.nominal_rate == rate and res.convention == "dividemix" and res.kind == "symmetric"
    np.testing.assert_allclose(res.transition, nominal_transition("symmetric", rate, 10), atol=0.03)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_symmetric_exclusive_flips_with_probability_rate_to_another_class(rate):
    labels = balanced(10)
    res = make_noisy_labels(labels, kind="symmetric", rate=rate, convention="exclusive", seed=3)
    assert within_binomial(res.realised_rate, rate, N)
    expected = nominal_transition("symmetric", rate, 10, convention="exclusive")
    np.testing.assert_allclose(np.diag(expected), 1 - rate)
    np.testing.assert_allclose(res.transition, expected, atol=0.03)


def test_rate_one_separates_the_conventions():
    labels = balanced(10, 5000)
    assert make_noisy_labels(labels, rate=1.0, convention="exclusive").realised_rate == 1.0
    dividemix = make_noisy_labels(labels, rate=1.0, convention="dividemix").realised_rate
    assert within_binomial(dividemix, 0.9, 5000)
    assert make_noisy_labels(labels, rate=0.0).realised_rate == 0.0


@pytest.mark.parametrize("convention", ["dividemix", "exclusive"])
def test_cifar10_asymmetric_maps_exactly_the_listed_pairs(convention):
    labels = balanced(10)
    res = make_noisy_labels(labels, kind="asymmetric", rate=0.4, dataset="cifar10", convention=convention, seed=1)
    changed = res.is_noisy
    pairs = set(zip(labels[changed].tolist(), res.noisy_labels[changed].tolist()))
    assert pairs == {(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)}  # truck, bird, deer, cat, dog
    assert not changed[np.isin(labels, [0, 1, 6, 7, 8])].any()
    # Half the classes are mapped, so about rate / 2 of all labels end up wrong.
    assert within_binomial(res.realised_rate, 0.2, N)
    for src in CIFAR10_ASYMMETRIC:
        assert within_binomial(res.transition[src, src], 0.6, N // 10)


def test_dividemix_asymmetric_flips_every_chosen_mapped_sample():
    # All labels are mapped classes, so exactly int(rate * N) change.
    labels = np.tile([9, 2, 4, 3, 5], 1000)
    res = make_noisy_labels(labels, kind="asymmetric", rate=0.37, dataset="cifar10", seed=0)
    assert res.is_noisy.sum() == int(0.37 * len(labels))


def test_cifar100_asymmetric_cycles_within_each_superclass():
    assert np.bincount(CIFAR100_COARSE).tolist() == [5] * 20
    targets = asymmetric_targets("cifar100")
    assert sorted(targets.tolist()) == list(range(100)) and (targets != np.arange(100)).all()
    np.testing.assert_array_equal(CIFAR100_COARSE[targets], CIFAR100_COARSE)
    # Following the map five times returns to the start: a 5-cycle per superclass.
    cycled = np.arange(100)
    for _ in range(5):
        cycled = targets[cycled]
    np.testing.assert_array_equal(cycled, np.arange(100))
    labels = balanced(100)
    res = make_noisy_labels(labels, kind="asymmetric", rate=0.5, dataset="cifar100", convention="exclusive")
    changed = res.is_noisy
    np.testing.assert_array_equal(res.noisy_labels[changed], targets[labels[changed]])
    assert within_binomial(res.realised_rate, 0.5, N)


def test_pairflip_moves_only_to_the_next_class():
    labels = balanced(7)
    res = make_noisy_labels(labels, kind="pairflip", rate=0.45, seed=2)
    changed = res.is_noisy
    np.testing.assert_array_equal(res.noisy_labels[changed], (labels[changed] + 1) % 7)
    assert within_binomial(res.realised_rate, 0.45, N)
    assert res.convention is None


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_and_deterministic(kind):
    labels = balanced(10, 3000)
    first = make(kind, labels, rate=0.4, seed=7)
    np.testing.assert_array_equal(make(kind, labels, rate=0.4, seed=7).noisy_labels, first.noisy_labels)
    assert not np.array_equal(make(kind, labels, rate=0.4, seed=8).noisy_labels, first.noisy_labels)
    assert first.noisy_labels.dtype == np.int64 and first.noisy_labels.shape == (3000,)
    assert first.seed == 7


@pytest.mark.parametrize("kind", KINDS)
def test_transition_rows_sum_to_one_and_reproduce_counts(kind):
    labels = balanced(10, 5000)
    res = make(kind, labels, rate=0.3, seed=0)
    np.testing.assert_allclose(res.transition.sum(axis=1), 1.0)
    counts = np.zeros((10, 10))
    np.add.at(counts, (labels, res.noisy_labels), 1)
    np.testing.assert_allclose(res.transition * np.bincount(labels)[:, None], counts, atol=1e-9)
    assert res.realised_rate == pytest.approx((res.noisy_labels != labels).mean())


def test_transition_of_an_absent_class_is_the_identity_row():
    t = transition_from_labels(np.array([0, 0, 2]), np.array([2, 0, 2]), num_classes=3)
    np.testing.assert_allclose(t, [[0.5, 0, 0.5], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(LabelError, match=r"\[0, 2\)"):
        transition_from_labels(np.array([0, 1]), np.array([0, 2]), num_classes=2)


@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_instance_noise_rate_is_close_to_nominal(rate):
    labels = balanced(10)
    res = make_noisy_labels(labels, kind="instance", rate=rate, features=features_for(labels, 32), seed=0)
    # flip rates ~ N(rate, 0.1) truncated to [0, 1]: the mean is rate to within 0.001 here
    assert abs(res.realised_rate - rate) < 0.015
    assert res.kind == "instance" and res.nominal_rate == rate


def test_instance_noise_depends_on_features():
    # One class, two groups of samples with opposite feature vectors: the projection
    # scores flip sign, so each group's flips concentrate on a different class.
    labels = np.zeros(4000, dtype=np.int64)
    direction = np.random.default_rng(0).normal(size=8)
    features = np.where((np.arange(4000) < 2000)[:, None], 50 * direction, -50 * direction)
    res = make_noisy_labels(labels, kind="instance", rate=0.4, num_classes=5, features=features, seed=0)
    first, second = res.noisy_labels[:2000], res.noisy_labels[2000:]
    top_first = np.bincount(first[first != 0], minlength=5).argmax()
    top_second = np.bincount(second[second != 0], minlength=5).argmax()
    assert top_first != top_second
    assert (first[first != 0] == top_first).mean() > 0.95 and (second[second != 0] == top_second).mean() > 0.95
    shuffled = make_noisy_labels(labels, kind="instance", rate=0.4, num_classes=5,
                                 features=features[::-1], seed=0)
    assert not np.array_equal(shuffled.noisy_labels, res.noisy_labels)


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "lots"])
def test_rate_outside_unit_interval_is_a_config_error(rate):
    with pytest.raises(ConfigError, match=r"noise rate must be .*\[0, 1\]"):
        make_noisy_labels(balanced(3, 30), rate=rate)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        nominal_transition("pairflip", rate, 3)


@pytest.mark.parametrize("dataset", ["clothing1m", "mnist", None])
def test_asymmetric_without_a_mapping_lists_the_ones_that_have_one(dataset):
    with pytest.raises(InputError, match="mappings are defined for cifar10, cifar100") as exc:
        make_noisy_labels(balanced(10, 100), kind="asymmetric", rate=0.2, dataset=dataset)
    if dataset:
        assert repr(dataset) in str(exc.value)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(kind="gaussian"), InputError, "kind 'gaussian'.*symmetric, asymmetric, pairflip, instance"),
    (dict(convention="coteaching"), InputError, "convention 'coteaching'.*dividemix, exclusive"),
    (dict(kind="instance"), InputError, "needs features"),
    (dict(kind="instance", features=np.zeros((99, 4))), ShapeError, r"N = 100"),
    (dict(kind="instance", features=np.full((100, 4), np.nan)), InputError, "NaN"),
    (dict(num_classes=5), LabelError, r"\[0, 5\)"),
    (dict(num_classes=1), ConfigError, "at least 2 classes"),
    (dict(kind="asymmetric", dataset="cifar10", num_classes=12), ConfigError, "10 classes"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_noisy_labels(np.arange(100) % 10, rate=0.2, **kwargs)


@pytest.mark.parametrize("labels, error", [
    (np.array([0.0, 1.5]), LabelError),  # whole-number floats are labels; fractions are not
    (np.array([0, -1]), LabelError),
    (np.zeros((2, 2), np.int64), ShapeError),
    (np.array([], np.int64), ShapeError),
])
def test_bad_labels(labels, error):
    with pytest.raises(error):
        make_noisy_labels(labels, rate=0.2, num_classes=3)


def test_instance_has_no_nominal_transition():
    with pytest.raises(InputError, match="depends on each sample's features"):
        nominal_transition("instance", 0.2, 10)
