"""SimCLR pretraining (Chen et al., 2020) of a backbone, to feed DMLP its features.

A backbone (by default ResNet-18 with the CIFAR stem) plus a projection MLP is trained to
match two augmentations of each image against the rest of the batch (NT-Xent). The
defaults are the usual CIFAR recipe (solo-learn's, which reaches about 90% linear-probe
accuracy with ResNet-18 after 1,000 epochs): LARS, base learning rate 0.4 per 256 images,
10 warm-up epochs then cosine decay, temperature 0.2, crops of scale 0.08–1, colour jitter
0.4/0.4/0.4/0.1 with p = 0.8, grayscale with p = 0.2. That needs a GPU (see
``docs/features.md`` for times); on a CPU only tiny configurations are practical.

Checkpoints are written atomically after every epoch and hold the model, optimiser,
epoch and config, so an interrupted run resumes where it stopped, and
:func:`~dmlp_plugin.features.checkpoints.load_checkpoint` (``dmlp features --checkpoint``)
reads the backbone straight out of them, dropping the projection head.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.base import ImageDataset
from ..errors import ConfigError, CorruptFileError
from ..io import atomic_write
from ..device import choose_device
from ..progress import progress_bar
from .backbones import create_backbone, feature_dim, forward_features
from .checkpoints import load_torch_file
from .config import SimCLRConfig
from .extract import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["SimCLRConfig", "SimCLRModel", "SimCLRResult", "LARS", "nt_xent_loss", "simclr_augmentation",
           "pretrain_simclr", "read_pretrain_config", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "dmlp-simclr/1"
class SimCLRModel(nn.Module):
    """Backbone plus projection MLP; state keys are ``backbone.*`` and ``projector.*``."""

    def __init__(self, backbone: nn.Module, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                                       nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(forward_features(self.backbone, x))


@dataclass
class SimCLRResult:
    """What :func:`pretrain_simclr` returns.

    Attributes
    ----------
    backbone : nn.Module
        The trained backbone (headless), in eval mode.
    history : list of float
        Mean NT-Xent loss of each epoch, from the first (including resumed ones).
    checkpoint : Path or None
        The checkpoint file, when one was written.
    """

    backbone: nn.Module
    history: list[float] = field(default_factory=list)
    checkpoint: Path | None = None


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent: each of the ``2B`` projections must pick its partner among the other ``2B - 1``.

    Parameters
    ----------
    z1, z2 : (B, d) tensors
        Projections of the two views, row ``i`` of each from the same image.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partner)


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    Each parameter's update (gradient plus weight decay) is scaled by the trust ratio
    ``eta * ||w|| / ||update||``. Parameters with ``lars=False`` in their group (biases and
    normalisation weights, as in SimCLR) get plain momentum SGD without weight decay.
    """

    def __init__(self, params: Iterable, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if group["lars"]:
                    update = update.add(p, alpha=group["weight_decay"])
                    w_norm, u_norm = p.norm(), update.norm()
                    trust = torch.where((w_norm > 0) & (u_norm > 0), group["eta"] * w_norm / u_norm,
                                        torch.ones_like(w_norm))
                    update = update.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def simclr_augmentation(image_size: int = 32, crop_scale: tuple[float, float] = (0.08, 1.0)) -> Callable:
    """The SimCLR view: random resized crop, flip, colour jitter (p = 0.8), grayscale (p = 0.2)."""
    from torchvision import transforms as T

    return T.Compose([
        T.RandomResizedCrop(image_size, scale=crop_scale),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def pretrain_simclr(
    dataset: ImageDataset,
    config: SimCLRConfig = SimCLRConfig(),
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> SimCLRResult:
    """Train a backbone with SimCLR on the images of ``dataset`` (labels are not used).

    Parameters
    ----------
    dataset : ImageDataset
        Training images (read with ``load_image``; the dataset's transform is ignored).
    config : SimCLRConfig
    checkpoint : path, optional
        Written atomically after every epoch. If it exists and ``resume`` is set,
        training continues from it (raising ``epochs`` in the config extends a finished run).
    resume : bool
        Continue from ``checkpoint`` when it exists; otherwise start over and overwrite it.
    device : str or torch.device, optional
        CUDA when available by default (float16 autocast there).
    progress : bool
        Show a rich progress bar.

    Returns
    -------
    SimCLRResult

    Raises
    ------
    ConfigError
        The batch is larger than the dataset, or a resumed checkpoint has another backbone
        or projection.
    CorruptFileError
        ``checkpoint`` exists but is not a SimCLR checkpoint of this package.
    """
    if len(dataset) < config.batch_size:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(dataset)} training images")
    dev = choose_device(device)
    torch.manual_seed(config.seed)
    backbone = create_backbone(config.backbone)
    dim = feature_dim(backbone, image_size=config.image_size)
    model = SimCLRModel(backbone, dim, config.projection_hidden or dim, config.projection_dim)
    model = model.to(device=dev, memory_format=torch.channels_last)
    optimizer = _optimizer(model, config)
    history: list[float] = []
    start_epoch = 0
    path = Path(checkpoint).expanduser() if checkpoint is not None else None
    if path is not None and resume and path.exists():
        start_epoch, history = _resume(path, model, optimizer, config)

    loader_data = _TwoViews(dataset, simclr_augmentation(config.image_size, config.crop_scale))
    steps_per_epoch = len(dataset) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    scaler = torch.amp.GradScaler(dev.type, enabled=dev.type == "cuda")
    with progress_bar(progress, total_steps, "SimCLR", completed=start_epoch * steps_per_epoch) as advance:
        for epoch in range(start_epoch, config.epochs):
            model.train()
            # seeding per epoch makes a resumed run draw the batches and crops it would have
            torch.manual_seed(config.seed * 100_003 + epoch)
            loader = DataLoader(loader_data, batch_size=config.batch_size, shuffle=True, drop_last=True,
                                num_workers=config.num_workers, pin_memory=dev.type == "cuda")
            total, count = 0.0, 0
            for i, (v1, v2) in enumerate(loader):
                step = epoch * steps_per_epoch + i
                lr = _lr_at(step, total_steps, config.warmup_epochs * steps_per_epoch, config.base_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = torch.cat([v1, v2]).to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
                    z = model(x)
                loss = nt_xent_loss(z[:len(v1)], z[len(v1):], config.temperature)
                if not torch.isfinite(loss):
                    raise ConfigError(f"SimCLR loss became {loss.item()} at epoch {epoch + 1}; lower lr "
                                      f"(now {lr:.3g}) or raise the temperature")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.item()
                count += 1
                if advance is not None:
                    advance(1, status=f"epoch {epoch + 1} loss {total / count:.3f}")
            history.append(total / count)
            if path is not None:
                _save(path, model, optimizer, config, epoch + 1, history)
    return SimCLRResult(model.backbone.eval(), history, path)


class _TwoViews(Dataset):
    def __init__(self, dataset: ImageDataset, augment: Callable) -> None:
        self.dataset = dataset
        self.augment = augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.dataset.load_image(index)
        return self.augment(image), self.augment(image)


def _optimizer(model: nn.Module, config: SimCLRConfig) -> torch.optim.Optimizer:
    # biases and normalisation parameters (1-D) get neither weight decay nor LARS scaling
    matrices = [p for p in model.parameters() if p.ndim > 1]
    vectors = [p for p in model.parameters() if p.ndim <= 1]
    if config.optimizer == "lars":
        return LARS([{"params": matrices}, {"params": vectors, "lars": False, "weight_decay": 0.0}],
                    lr=config.base_lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.SGD([{"params": matrices}, {"params": vectors, "weight_decay": 0.0}],
                           lr=config.base_lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def _save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: SimCLRConfig,
          epoch: int, history: list[float]) -> None:
    state = {"format": CHECKPOINT_FORMAT, "config": dataclasses.asdict(config), "epoch": epoch,
             "model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": list(history)}
    with atomic_write(path) as fh:
        torch.save(state, fh)


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
            config: SimCLRConfig) -> tuple[int, list[float]]:
    state = load_torch_file(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CorruptFileError(f"{path} is not a dmlp SimCLR checkpoint; pass resume=False "
                               "(CLI: --no-resume) to overwrite it")
    saved = state["config"]
    for key in ("backbone", "projection_dim", "projection_hidden", "optimizer"):
        if saved.get(key) != getattr(config, key):
            raise ConfigError(f"checkpoint {path} was trained with {key}={saved.get(key)!r}, not "
                              f"{getattr(config, key)!r}; resume with the same setting or pass resume=False")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]), [float(x) for x in state["history"]]


def read_pretrain_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The config stored in a ``dmlp pretrain`` checkpoint, or None for other files.

    Raises :class:`MissingFileError`/:class:`CorruptFileError` for unreadable files.
    """
    state = load_torch_file(path)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        return dict(state["config"])
    return None
