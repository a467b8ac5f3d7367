"""Configuration of SimCLR pretraining, kept free of torch so ``dmlp --help`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

__all__ = ["SimCLRConfig", "DEFAULT_LR"]

# base learning rate per 256 images, by optimiser (scaled linearly with the batch size)
DEFAULT_LR = {"lars": 0.4, "sgd": 0.3}


@dataclass(frozen=True)
class SimCLRConfig:
    """Hyperparameters of :func:`pretrain_simclr`; the defaults are the GPU recipe.

    Attributes
    ----------
    backbone : str
        Backbone name (see :func:`~dmlp_plugin.features.backbones.parse_backbone`).
    projection_dim, projection_hidden : int
        Output and hidden width of the projection MLP (Linear-BN-ReLU-Linear);
        ``projection_hidden=0`` uses the backbone's feature dimension.
    temperature : float
        NT-Xent temperature.
    epochs, batch_size : int
        Training length and images per batch (each seen in two views).
    optimizer : {"lars", "sgd"}
        LARS (SGD with layer-wise trust ratios; biases and norms excluded) or SGD.
    lr : float
        Base learning rate per 256 images; 0 picks 0.4 for LARS and 0.3 for SGD.
    momentum, weight_decay : float
        Weight decay is not applied to biases and normalisation parameters.
    warmup_epochs : int
        Linear warm-up before cosine decay to zero.
    image_size : int
        Side of the random crops.
    crop_scale : tuple of float
        Area range of ``RandomResizedCrop``.
    num_workers : int
        Data-loading processes (augmentation runs there).
    seed : int
        Seeds weights, batch order and augmentation (per epoch, so resuming repeats them),
        through torch's global generator.
    """

    backbone: str = "resnet18-cifar"
    projection_dim: int = 128
    projection_hidden: int = 2048
    temperature: float = 0.2
    epochs: int = 500
    batch_size: int = 512
    optimizer: Literal["lars", "sgd"] = "lars"
    lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 1e-5
    warmup_epochs: int = 10
    image_size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    num_workers: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in DEFAULT_LR:
            raise ConfigError(f"optimizer must be 'lars' or 'sgd', got {self.optimizer!r}")
        for name in ("projection_dim", "epochs", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2: NT-Xent needs other images as negatives")
        if self.temperature <= 0 or self.lr < 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError("temperature must be > 0; lr, weight_decay and warmup_epochs >= 0")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")

    @property
    def base_lr(self) -> float:
        """The learning rate after warm-up: ``lr`` (or the default) x ``batch_size / 256``."""
        return (self.lr or DEFAULT_LR[self.optimizer]) * self.batch_size / 256
