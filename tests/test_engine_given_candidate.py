"""The given labels as a candidate: the floor of the default pipeline's selection."""

from __future__ import annotations

import numpy as np

from dmlp_plugin import PurifyConfig, purify_dataset

FAST = dict(rounds=2, logistic_weight_decay=5e-3, given_candidate=True)


def _data(signal: float, noise: float, n=2000, c=5, d=24, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, c, n)
    x = rng.normal(size=(c, d))[clean] * signal + rng.normal(size=(n, d))
    noisy = np.where(rng.random(n) < noise, (clean + rng.integers(1, c, n)) % c, clean)
    trusted = np.concatenate([np.flatnonzero(clean == k)[:20] for k in range(c)])
    return x.astype(np.float32), noisy, clean, trusted


def _run(x, noisy, clean, trusted, **overrides):
    return purify_dataset(x, noisy, val_indices=trusted, val_labels=clean[trusted], clean_labels=clean,
                          config=PurifyConfig(**FAST, **overrides), feature_check=False)


def test_features_without_signal_keep_the_given_labels():
    x, noisy, clean, trusted = _data(signal=0.0, noise=0.1)
    result = _run(x, noisy, clean, trusted)
    given = result.metadata["candidates"][[c["name"] for c in result.metadata["candidates"]].index("given labels")]
    assert given["family"] == "given labels"
    assert given["changed"] == 0.0  # p(y | given) through T keeps every label at 10% noise
    rows = np.setdiff1d(np.arange(len(noisy)), trusted)
    # Whatever is selected, the labels are (nearly) the given ones: nothing in the features beats them.
    assert (result.labels[rows] == noisy[rows]).mean() > 0.98


def test_the_given_candidate_scores_the_given_labels_log_loss_and_loses_to_real_signal():
    x, noisy, clean, trusted = _data(signal=2.0, noise=0.4)
    result = _run(x, noisy, clean, trusted)
    records = {c["name"]: c for c in result.metadata["candidates"]}
    assert result.metadata["selected"] != "given labels"
    assert records["given labels"]["trusted_nll"] > records[result.metadata["selected"]]["trusted_nll"] + 0.1
    without = purify_dataset(x, noisy, val_indices=trusted, val_labels=clean[trusted], clean_labels=clean,
                             config=PurifyConfig(**{**FAST, "given_candidate": False}), feature_check=False)
    assert "given labels" not in {c["name"] for c in without.metadata["candidates"]}
    np.testing.assert_array_equal(without.labels, result.labels)  # a floor that does not win changes nothing
