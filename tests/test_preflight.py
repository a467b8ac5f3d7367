"""The pre-flight feature check (``dmlp_plugin.preflight`` and ``dmlp check-features``), on
synthetic features whose separability is known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dmlp_plugin.cli import main
from dmlp_plugin.errors import InputError, LabelError, ShapeError
from dmlp_plugin.preflight import WEAK_SKILL_THRESHOLD, FeatureCheck, check_features, check_trusted_features

C, PER_CLASS, DIM = 5, 40, 32


def blobs(separation: float, *, n_per_class: int = PER_CLASS, seed: int = 0, merge: tuple[int, ...] = ()):
    """Gaussian classes around orthogonal means ``separation`` apart (unit noise); classes in
    ``merge`` share one mean, so no feature can tell them apart."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), n_per_class)
    means = np.eye(C, DIM) * separation
    for c in merge:
        means[c] = means[merge[0]]
    x = means[y] + rng.standard_normal((len(y), DIM))
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order]


def test_separable_features_are_not_weak():
    x, y = blobs(separation=8.0)
    check = check_trusted_features(x, y, seed=0)
    assert check.accuracy > 0.97 and check.chance == pytest.approx(1 / C)
    assert not check.weak and check.skill > 0.95
    assert min(check.per_class_accuracy) > 0.9 and len(check.per_class_accuracy) == C
    assert check.advice.startswith("features look usable")


def test_noise_features_are_weak_and_say_what_to_do():
    x, y = blobs(separation=0.0)  # the features carry nothing about the class
    check = check_trusted_features(x, y, seed=0)
    assert check.accuracy < 0.4 and check.weak and check.skill < WEAK_SKILL_THRESHOLD
    assert check.advice.startswith("weak features") and "stronger encoder" in check.advice
    assert "\n" not in check.advice


def test_per_class_accuracy_points_at_classes_the_features_merge():
    x, y = blobs(separation=8.0, merge=(1, 3))
    check = check_trusted_features(x, y, seed=0)
    acc = np.array(check.per_class_accuracy)
    # classes 1 and 3 share a mean: about a coin flip between them; the others stay separable
    assert acc[[1, 3]].max() < 0.8 and acc[[0, 2, 4]].min() > 0.9
    assert sorted(check.weakest_classes[:2]) == [1, 3]


def test_held_out_means_held_out():
    """Memorisable features (one random direction per row, d > V) fit every training row
    and tell nothing about a new one: a probe scored on its own training rows would be near
    100%, the cross-fitted one stays near chance."""
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(C), 20)
    x = rng.standard_normal((len(y), 400)).astype(np.float32)
    check = check_trusted_features(x, y)
    assert check.accuracy < 0.45 and check.weak


def test_val_indices_read_the_trusted_rows_in_their_order():
    x, y = blobs(separation=8.0)
    rng = np.random.default_rng(1)
    features = rng.standard_normal((500, DIM)).astype(np.float32)  # untrusted rows: noise
    idx = rng.choice(500, len(y), replace=False)
    features[idx] = x
    check = check_features(features, val_indices=idx, val_labels=y)
    assert check.accuracy > 0.97  # rows and labels stayed aligned although idx is unsorted
    shuffled = check_features(features, val_indices=idx, val_labels=rng.permutation(y))
    assert shuffled.weak
    separate = check_features(None, val_features=x, val_labels=y)
    assert separate.accuracy == check.accuracy


def test_result_metadata_round_trip():
    x, y = blobs(separation=1.0)
    check = check_trusted_features(x, y)
    data = json.loads(json.dumps(check.to_dict()))
    assert data["weak"] == check.weak and data["skill"] == pytest.approx(check.skill)
    assert FeatureCheck.from_dict(data) == check


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(val_labels=np.r_[np.zeros(9, int), 1]), InputError, "at least 2 trusted rows of every class.*class 1 has 1"),
    (dict(val_labels=np.repeat([0, 2], 5)), LabelError, "no sample of class\\(es\\) 1"),
    (dict(val_labels=np.repeat([0, 1], 5), folds=11), InputError, "between 2 and 10 folds"),
    (dict(val_labels=np.repeat([0, 1], 6)), ShapeError, "has 12 entries but there are 10 samples"),
])
def test_bad_trusted_sets_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        check_trusted_features(np.zeros((10, 3), np.float32), **kwargs)


def test_check_features_needs_one_trusted_form():
    feats = np.zeros((20, 3), np.float32)
    with pytest.raises(InputError, match="exactly one of val_indices or val_features"):
        check_features(feats, val_labels=np.zeros(4, int))
    with pytest.raises(ShapeError, match="val_indices has 3 entries but val_labels has 4"):
        check_features(feats, val_indices=[0, 1, 2], val_labels=[0, 0, 1, 1])


def _write(tmp_path, separation):
    x, y = blobs(separation=separation)
    feats = np.random.default_rng(2).standard_normal((400, DIM)).astype(np.float32)
    idx = np.arange(0, 400, 2)[: len(y)]
    feats[idx] = x
    for name, arr in (("feats", feats), ("idx", idx), ("lab", y)):
        np.save(tmp_path / f"{name}.npy", arr)
    return [str(tmp_path / "feats.npy"), "--val-indices", str(tmp_path / "idx.npy"),
            "--val-labels", str(tmp_path / "lab.npy")]


def test_cli_warns_on_weak_features(tmp_path, capsys):
    assert main(["check-features", *_write(tmp_path, 0.0)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "warning: weak features: linear probe" in out and "stronger encoder" in out


def test_cli_does_not_warn_on_strong_features(tmp_path, capsys):
    assert main(["check-features", *_write(tmp_path, 8.0)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "ok: features look usable" in out and "warning" not in out


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    args = _write(tmp_path, 8.0)
    np.save(tmp_path / "lab.npy", np.zeros(3, int))
    assert main(["check-features", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--val-indices has 200 entries but --val-labels has 3" in " ".join(err.split())
