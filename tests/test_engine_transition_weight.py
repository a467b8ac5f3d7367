"""The transition weight ``b`` of a candidate's posterior, ``softmax(a·s + b·log T[:, ỹ])``,
fitted on trusted rows (``engine/posterior.py`` ``fit_transition_weight``), and the offsets
fitted with it (``fit_posterior_offsets``: ``+ c·[y = ỹ] + β_y``).

Planted data with a known, calibrated classifier: ``s = log p(y | x)`` exactly, the true
label drawn from it, the given label flipped to another class either at one rate for every
row (class-conditional noise: the plain posterior, ``a = b = 1``, is exact) or at a rate
that grows as the classifier grows unsure (instance-dependent, as human labellers err on
ambiguous images: a given label is less reliable where the classifier is unsure than the
class average ``T`` says).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.engine.posterior import (TRANSITION_WEIGHTS, fit_posterior_offsets, fit_transition_weight,
                                         transition_from_pairs)
from dmlp_plugin.noise import make_noisy_labels
from engine_fixtures import planted_clusters


def planted(instance_dependent: bool, *, seed: int, n: int = 10000, c: int = 10):
    g = torch.Generator().manual_seed(seed)
    scores = 2.5 * torch.randn(n, c, generator=g)  # log p(y | x) up to a constant
    p = scores.softmax(1)
    clean = torch.multinomial(p, 1, generator=g).squeeze(1)
    rate = 1.0 * (1 - p.max(1).values) if instance_dependent else torch.full((n,), 0.3)
    flip = torch.rand(n, generator=g) < rate
    given = torch.where(flip, (clean + torch.randint(1, c, (n,), generator=g)) % c, clean)
    log_t = transition_from_pairs(clean, given, c).clamp_min(1e-12).log().T[given]
    return scores, clean, log_t


def test_class_conditional_noise_keeps_the_plain_posterior():
    for seed in range(2):
        scores, clean, log_t = planted(False, seed=seed)
        a, b, _ = fit_transition_weight(scores, clean, log_t)
        assert float(b) in (0.95, 1.0, 1.05)
        assert abs(float(a) - 1.0) < 0.05


def test_instance_dependent_noise_weighs_the_transition_less_and_predicts_new_rows_better():
    scores, clean, log_t = planted(True, seed=0)
    a, b, nll = fit_transition_weight(scores, clean, log_t)
    assert 0.6 <= float(b) <= 0.9
    # Better on rows it was not fitted on than the best temperature at b = 1 (the grid holds 1,
    # so in-sample it can only match or win).
    scores2, clean2, log_t2 = planted(True, seed=5)
    plain = min((F.cross_entropy(t * scores + log_t, clean), t) for t in torch.linspace(0.5, 1.5, 101))[1]
    assert F.cross_entropy(a * scores2 + b * log_t2, clean2) < F.cross_entropy(plain * scores2 + log_t2, clean2) - 0.003
    assert float(nll) == pytest.approx(float(F.cross_entropy(a * scores + b * log_t, clean)), rel=1e-5)


def test_the_grid_holds_the_plain_posterior_and_the_classifier_alone():
    assert 1.0 in TRANSITION_WEIGHTS and 0.0 in TRANSITION_WEIGHTS
    # Given labels that carry no information: the classifier alone (b = 0) is best.
    scores, clean, _ = planted(False, seed=3)
    noise = torch.randn(len(clean), 10, generator=torch.Generator().manual_seed(1))
    _, b, _ = fit_transition_weight(scores, clean, noise)
    assert float(b) == 0.0


def planted_offsets(seed: int, *, n: int, keep: float, offsets: torch.Tensor, weight: float = 1.0):
    """Rows whose true label is drawn from ``softmax(s + weight·log T[:, ỹ] + keep·[y = ỹ] + offsets)``:
    the model of :class:`PosteriorFit` with known parameters (``a = 1``)."""
    c = len(offsets)
    g = torch.Generator().manual_seed(seed)
    scores = 2.0 * torch.randn(n, c, generator=g)
    given = torch.randint(c, (n,), generator=g)
    # Unequal off-diagonal entries, so that b·log T is not just a keep offset.
    off = torch.rand(c, c, generator=g).fill_diagonal_(0)
    t = 0.7 * torch.eye(c) + 0.3 * off / off.sum(1, keepdim=True)
    log_t = t.log().T[given]
    logits = scores + weight * log_t + keep * F.one_hot(given, c) + offsets
    clean = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    return scores, clean, given, log_t


def test_offsets_recover_a_planted_keep_offset_and_class_offsets():
    offsets = torch.tensor([0.6, -0.4, 0.0, 0.3, -0.5])
    scores, clean, given, log_t = planted_offsets(0, n=20000, keep=0.8, offsets=offsets)
    fit = fit_posterior_offsets(scores, clean, log_t, given)
    assert abs(float(fit.scale) - 1.0) < 0.05
    assert float(fit.weight) in (0.9, 0.95, 1.0, 1.05, 1.1)
    assert abs(float(fit.keep) - 0.8) < 0.15
    # Softmax ignores a constant added to every class: compare centred offsets.
    centred = fit.offsets - fit.offsets.mean()
    torch.testing.assert_close(centred, offsets - offsets.mean(), atol=0.08, rtol=0)
    # On fresh rows of the same model, better than the weight alone (which cannot shift classes).
    scores2, clean2, given2, log_t2 = planted_offsets(1, n=20000, keep=0.8, offsets=offsets)
    a, b, _ = fit_transition_weight(scores, clean, log_t)
    with_offsets = F.cross_entropy(fit.scale * scores2 + fit.log_prior(log_t2, given2), clean2)
    assert with_offsets < F.cross_entropy(a * scores2 + b * log_t2, clean2) - 0.01


def test_offsets_leave_the_plain_posterior_where_it_is_exact():
    scores, clean, log_t = planted(False, seed=0)
    given = log_t.argmax(1)  # log T[:, ỹ] peaks at T's diagonal: the given label
    fit = fit_posterior_offsets(scores, clean, log_t, given)
    assert float((fit.offsets - fit.offsets.mean()).abs().max()) < 0.15
    # Under symmetric noise b·log T[:, ỹ] and the keep offset nearly coincide (T's off-diagonal
    # entries are alike), so they are judged together, by the posterior on fresh rows.
    scores2, clean2, log_t2 = planted(False, seed=5)
    given2 = log_t2.argmax(1)
    fitted = fit.scale * scores2 + fit.log_prior(log_t2, given2)
    assert (fitted.argmax(1) == (scores2 + log_t2).argmax(1)).float().mean() > 0.99
    assert F.cross_entropy(fitted, clean2) < F.cross_entropy(scores2 + log_t2, clean2) + 0.005
    # log_prior is b·log T[:, ỹ] + c·[y = ỹ] + β, row by row.
    manual = fit.weight * log_t + fit.keep * F.one_hot(given, 10) + fit.offsets
    torch.testing.assert_close(fit.log_prior(log_t, given), manual)


# -- through purify_dataset ------------------------------------------------------------------------

QUICK = PurifyConfig(mlp_candidate=False, rounds=4)


def ambiguity_noise(data, seed: int) -> np.ndarray:
    """Each row's label moved to its nearest other class with probability 0.05 + the Bayes
    probability of not being its own class: noise only where the features are ambiguous."""
    logits = -0.5 * ((data.features[:, None, :] - data.means[None]) ** 2).sum(-1)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ranked = np.argsort(-p, 1)
    nearest_other = np.where(ranked[:, 0] == data.clean, ranked[:, 1], ranked[:, 0])
    flip = np.random.default_rng(seed).random(len(p)) < 0.05 + (1 - p[np.arange(len(p)), data.clean])
    return np.where(flip, nearest_other, data.clean)


def _accuracy(data, given, **config):
    rest = np.setdiff1d(np.arange(len(given)), data.trusted)
    result = purify_dataset(data.features, given, val_indices=data.trusted, val_labels=data.clean[data.trusted],
                            num_classes=data.num_classes, config=QUICK.replace(**config), seed=0, progress=False,
                            device="cpu")
    return (result.labels[rest] == data.clean[rest]).mean(), result.metadata


def test_noise_where_the_features_are_ambiguous_drops_the_transition_and_fixes_more_labels():
    data = planted_clusters(n=3000, num_classes=5, rate=0.0, num_trusted=300, separation=2.0, seed=0)
    given = ambiguity_noise(data, seed=0)
    fitted, meta = _accuracy(data, given)
    plain, plain_meta = _accuracy(data, given, fit_transition_weight=False)
    # The given label says only that the row is ambiguous, not which class it is.
    assert meta["transition_weight"] <= 0.3
    assert fitted > plain + 0.05
    assert "transition_weight" not in plain_meta


def test_class_dependent_noise_keeps_a_weight_near_one_and_the_labels():
    for rate, seed in ((0.2, 1), (0.3, 2)):
        data = planted_clusters(n=3000, num_classes=5, rate=rate, num_trusted=300, seed=seed)
        fitted, meta = _accuracy(data, data.given, fit_posterior_offsets=False)
        plain, _ = _accuracy(data, data.given, fit_transition_weight=False)
        assert meta["selected"].startswith("logistic")
        assert 0.8 <= meta["transition_weight"] <= 1.2
        assert abs(fitted - plain) < 0.01
        # With the offsets, b is not identified here (symmetric noise: T's off-diagonal
        # entries are alike, so b·log T and the keep offset coincide), but the labels are
        # the plain posterior's within a point.
        with_offsets, meta = _accuracy(data, data.given)
        assert 0.0 <= meta["transition_weight"] <= 1.5
        assert abs(with_offsets - plain) < 0.01


def test_offsets_wait_for_enough_trusted_rows_of_every_class():
    from dmlp_plugin.engine.posterior import offsets_identified

    least = QUICK.offsets_min_rows_per_class
    assert least == 10  # CIFAR-10's 1,000 trusted rows hold about 100 of each class
    labels = torch.arange(3).repeat_interleave(least)
    assert offsets_identified(labels, 3, least)
    assert not offsets_identified(labels[1:], 3, least)  # class 0 one row short
    assert not offsets_identified(labels, 4, least)  # class 3 has none
    assert offsets_identified(labels[1:], 3, least - 1)  # the minimum is the config's
    # Through purify_dataset, on pair-flip noise where a logistic candidate (whose posterior
    # the offsets act on) is selected: with 7 trusted rows in some class the offsets are not
    # fitted, and the labels are exactly the weight-only ones. Lowering the minimum to what
    # there is fits them, and on so few rows they cost accuracy.
    data = planted_clusters(n=3000, num_classes=5, dim=16, separation=2.0, rate=0.0, num_trusted=40, seed=4)
    given = make_noisy_labels(data.clean, kind="pairflip", rate=0.4, num_classes=5, seed=1).noisy_labels
    fewest = np.bincount(data.clean[data.trusted], minlength=5).min()
    assert 0 < fewest < least
    kwargs = dict(val_indices=data.trusted, val_labels=data.clean[data.trusted], num_classes=5, seed=0,
                  progress=False, device="cpu")
    on = purify_dataset(data.features, given, config=QUICK, **kwargs)
    off = purify_dataset(data.features, given, config=QUICK.replace(fit_posterior_offsets=False), **kwargs)
    assert on.metadata["selected"].startswith("logistic")
    np.testing.assert_array_equal(on.soft_labels, off.soft_labels)
    lowered = purify_dataset(data.features, given, config=QUICK.replace(offsets_min_rows_per_class=int(fewest)),
                             **kwargs)
    assert lowered.metadata["selected"].startswith("logistic")
    assert not np.array_equal(lowered.soft_labels, off.soft_labels)
    assert lowered.accuracy(data.clean) < off.accuracy(data.clean)
