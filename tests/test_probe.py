"""The linear probe: fits what is linearly separable, stays at chance on noise, checks input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dmlp_plugin.errors import ConfigError, InputError, LabelError, ShapeError
from dmlp_plugin.features.probe import LinearClassifier, fit_linear_classifier, linear_probe
from shared_fixtures import needs_shared

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def blobs(n: int, d: int = 8, c: int = 3, sep: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * sep
    y = rng.integers(0, c, n)
    # a large offset and scale per feature: the probe's standardisation must cope
    x = (centres[y] + rng.normal(size=(n, d))) * np.linspace(1, 100, d) + 1000
    return x.astype(np.float32), y


def test_probe_separates_blobs_and_is_at_chance_on_random_labels():
    x, y = blobs(600)
    assert linear_probe(x[:400], y[:400], x[400:], y[400:]) > 0.97
    rng = np.random.default_rng(1)
    noise = linear_probe(rng.normal(size=(400, 8)).astype(np.float32), rng.integers(0, 4, 400),
                         rng.normal(size=(400, 8)).astype(np.float32), rng.integers(0, 4, 400))
    assert noise < 0.4


def test_classifier_folds_standardisation_and_predicts_consistently():
    x, y = blobs(300)
    clf = fit_linear_classifier(x, y, epochs=50)
    assert isinstance(clf, LinearClassifier)
    assert clf.weight.shape == (3, 8) and clf.bias.shape == (3,)
    logits = clf.decision_function(x)
    manual = ((torch.from_numpy(x) - clf.mean) / clf.std) @ clf.weight.T + clf.bias
    np.testing.assert_allclose(logits, manual.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(clf.predict(x), logits.argmax(1))
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert clf.score(x, y) > 0.97


def test_weight_decay_shrinks_weights_and_adam_also_fits():
    x, y = blobs(300)
    small = fit_linear_classifier(x, y, weight_decay=1e-4, epochs=50)
    large = fit_linear_classifier(x, y, weight_decay=1.0, epochs=50)
    assert large.weight.norm() < 0.5 * small.weight.norm()
    adam = fit_linear_classifier(x, y, method="adam", epochs=30, lr=1e-2, batch_size=64, seed=3)
    assert adam.score(x, y) > 0.95
    # the seed fixes the mini-batch order, so the fit is reproducible
    again = fit_linear_classifier(x, y, method="adam", epochs=30, lr=1e-2, batch_size=64, seed=3)
    torch.testing.assert_close(adam.weight, again.weight)


def test_probe_accepts_float16_and_torch_inputs():
    x, y = blobs(200)
    acc16 = linear_probe(x.astype(np.float16), y, torch.from_numpy(x), torch.from_numpy(y))
    assert acc16 > 0.97


def test_probe_rejects_bad_inputs():
    x, y = blobs(50)
    with pytest.raises(ShapeError, match="train_y has 40 entries but there are 50 samples"):
        linear_probe(x, y[:40], x, y)
    with pytest.raises(ShapeError, match="features"):
        linear_probe(x[:, 0], y, x, y)
    with pytest.raises(InputError, match="floating point"):
        linear_probe(x.astype(np.int64), y, x, y)
    with pytest.raises(LabelError, match="integer class indices.*fractional"):
        linear_probe(x, y + np.float32(0.5), x, y)
    with pytest.raises(LabelError, match="negative"):
        linear_probe(x, y - 1, x, y)
    with pytest.raises(LabelError, match="num_classes"):
        fit_linear_classifier(x, y, num_classes=2)
    with pytest.raises(ConfigError, match="method"):
        fit_linear_classifier(x, y, method="sgd")
    with pytest.raises(ConfigError, match="weight_decay"):
        fit_linear_classifier(x, y, weight_decay=-1)
    clf = fit_linear_classifier(x, y, epochs=5)
    with pytest.raises(ShapeError, match="fitted on 8"):
        clf.predict(x[:, :4])


@pytest.mark.shared
def test_probe_reproduces_the_reference_kmeans_accuracy():
    path = SHARED / "features" / "cifar10_kmeans_pca512.npz"
    labels = SHARED / "data" / "cifar10" / "train_labels_original_order.npy"
    test_batch = Path.home() / ".cache" / "dmlp" / "cifar10" / "cifar-10-batches-py" / "test_batch"
    if not (path.is_file() and labels.is_file() and test_batch.is_file()):
        pytest.skip(needs_shared("the CIFAR-10 k-means features, with CIFAR-10 in ~/.cache/dmlp/cifar10,"))
    from dmlp_plugin.data import CIFAR10

    z = np.load(path)
    test = CIFAR10(test_batch.parent, "test")
    acc = linear_probe(z["train"], np.load(labels), z["test"], test.targets)
    # the shared README states 65.9% for these features
    assert acc == pytest.approx(0.659, abs=0.01)
