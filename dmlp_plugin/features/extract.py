"""Batched feature extraction with a frozen backbone, cached on disk.

:func:`extract_features` runs a backbone (a name or any ``nn.Module``, optionally filled
from a self-supervised checkpoint) over a dataset in index order and returns ``(N, D)``
float32 features, plus those of horizontally flipped images for DMLP's two-view mode.
Inference is no-grad and channels-last, with mixed precision on CUDA (float16) and on CPUs
with AMX matrix units (bfloat16). Results are cached
by what determines them, so a rerun returns the stored arrays without touching the model.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.base import ImageDataset
from ..errors import ConfigError, InputError
from ..io import atomic_write
from ..device import choose_device
from ._hardware import fast_bfloat16
from ..progress import Reporter, reporting
from .backbones import create_backbone, forward_features, parse_backbone
from .cache import FeatureCache, cache_key
from .checkpoints import file_sha256, load_checkpoint
from .packaged import is_packaged, packaged_transform

__all__ = ["extract_features", "default_transform", "save_features", "VIEWS", "IMAGENET_MEAN", "IMAGENET_STD"]

VIEWS = ("none", "hflip")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_transform(image_size: int | None = None) -> Callable:
    """PIL image → normalised tensor (ImageNet mean/std, as timm, torchvision and
    ``dmlp pretrain`` use). With ``image_size``, resize the short side to
    ``image_size * 8/7`` and centre-crop ``image_size`` (the usual evaluation crop)."""
    from torchvision import transforms as T

    steps: list[Any] = []
    if image_size is not None:
        steps += [T.Resize(round(image_size * 8 / 7)), T.CenterCrop(image_size)]
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def extract_features(
    dataset: ImageDataset,
    backbone: str | nn.Module,
    *,
    checkpoint: str | os.PathLike | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    views: Sequence[str] = ("none",),
    transform: Callable | None = None,
    image_size: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: bool | Reporter = True,
    output: str | os.PathLike | None = None,
    strict: bool = True,
    trust_checkpoint: bool = False,
    amp: bool = True,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """Features of every image of ``dataset``, in its index order.

    Parameters
    ----------
    dataset : ImageDataset
        Yields ``(image, label, index)``; only :meth:`~ImageDataset.load_image` is used,
        so the dataset's own training transform is ignored.
    backbone : str or nn.Module
        A torchvision/timm name, ``-cifar`` for the CIFAR stem (``"resnet18-cifar"``), or
        a module whose output is ``(N, D)`` or ``(N, C, H, W)`` (average-pooled).
    checkpoint : path, optional
        Local weights (SimCLR/MoCo/BYOL/``dmlp pretrain`` checkpoints or a plain state
        dict), loaded with prefix remapping. Without one, a named backbone is random.
    batch_size, num_workers : int
        Inference batch size and data-loading worker processes.
    device : str or torch.device, optional
        CUDA when available by default.
    views : sequence of {"none", "hflip"}
        Which views to extract: ``("none",)`` or ``("none", "hflip")`` for DMLP's two-view
        mode (the flip is applied to the batch, so images are read once).
    transform : callable, optional
        PIL image → ``(3, H, W)`` tensor; :func:`default_transform` by default.
    image_size : int, optional
        Resize/centre-crop size of the default transform; ``None`` keeps in-memory images
        (CIFAR) at their size and uses 224 for file-backed datasets.
    cache : bool
        Look up and store results in the feature cache.
    cache_dir : path, optional
        Cache folder; ``$DMLP_CACHE_DIR/features`` or ``~/.cache/dmlp/features`` by default.
    progress : bool or Reporter
        Report the images done and the writing of ``output`` as stages: ``True`` on stderr
        (bars on a terminal, plain lines in a log), or to a :class:`~dmlp_plugin.progress.Reporter`.
    output : path, optional
        Also write the features: ``.npz`` with arrays ``features`` (and
        ``features_hflip``), or ``.npy`` (the flipped view beside it as
        ``<stem>.features_hflip.npy``).
    strict, trust_checkpoint : bool
        See :func:`~dmlp_plugin.features.checkpoints.load_checkpoint` (``trusted``).
    amp : bool
        Mixed precision: float16 autocast on CUDA, bfloat16 on CPUs with AMX matrix units
        (twice the throughput there; features move by ~0.3% relative). Off, or on other
        CPUs, everything is float32. The precision used is part of the cache key.

    Returns
    -------
    np.ndarray or tuple of np.ndarray
        ``(N, D)`` float32 for one view; a tuple ``(features, features_hflip)`` for two.
        Cache hits are read-only memory maps.

    See also
    --------
    dmlp_plugin.features.dataset_features : plugins first, k-means, and sharding of this
        extraction over the ranks of a ``torchrun`` run.

    Raises
    ------
    InputError
        Unknown backbone (with close matches), a checkpoint that does not fit it, bad views.
    ConfigError
        ``batch_size`` or ``num_workers`` out of range.
    """
    plan = _plan(dataset, backbone, checkpoint=checkpoint, batch_size=batch_size, device=device, views=views,
                 transform=transform, image_size=image_size, cache=cache, cache_dir=cache_dir,
                 num_workers=num_workers, output=output, amp=amp)
    arrays = plan.store.get(plan.key, plan.views) if plan.store is not None else None
    if arrays is None:
        arrays = _run(dataset, backbone, checkpoint, plan.transform, plan.views, batch_size=batch_size,
                      device=plan.device, autocast=plan.autocast, num_workers=num_workers, progress=progress,
                      strict=strict, trusted=trust_checkpoint)
        if plan.store is not None:
            plan.store.put(plan.key, plan.views, arrays, plan.parts)
    if output is not None:
        save_features(output, {_array_name(v): a for v, a in zip(plan.views, arrays)}, progress=progress)
    return arrays[0] if len(arrays) == 1 else tuple(arrays)


@dataclass(frozen=True)
class _Plan:
    """What an extraction will do, settled before any image is read: shared by the
    single-process path and the sharded one (:mod:`dmlp_plugin.features.dataset`), so both
    compute the same cache key for the same request."""

    views: tuple[str, ...]
    transform: Callable
    device: torch.device
    autocast: torch.dtype | None
    parts: dict[str, Any]
    key: str
    store: FeatureCache | None


def _plan(dataset: ImageDataset, backbone: str | nn.Module, *, checkpoint: str | os.PathLike | None,
          batch_size: int, device: str | torch.device | None, views: Sequence[str], transform: Callable | None,
          image_size: int | None, cache: bool, cache_dir: str | os.PathLike | None, num_workers: int,
          output: str | os.PathLike | None, amp: bool) -> _Plan:
    """Check the arguments of :func:`extract_features` and settle transform, device,
    precision and cache key."""
    views = _check_views(views)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    if not isinstance(dataset, Dataset) or not hasattr(dataset, "load_image"):
        raise InputError(f"dataset must be an ImageDataset (see dmlp_plugin.data), got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise InputError("dataset is empty")
    if output is not None:
        _output_path(output)  # refuse a bad name before the work, not after
    if transform is None and is_packaged(backbone) and image_size is None:
        transform = packaged_transform(backbone)  # the resolution and scaling it was trained with
    if transform is None:
        if image_size is None and getattr(dataset, "images", None) is None:
            image_size = 224
        transform = default_transform(image_size)

    dev = choose_device(device)
    autocast = _autocast_dtype(dev) if amp else None
    parts = {"dataset": dataset.fingerprint(), "n": len(dataset), "backbone": _backbone_id(backbone),
             "checkpoint": file_sha256(checkpoint) if checkpoint is not None else None,
             "transform": repr(transform), "views": list(views), "autocast": str(autocast)}
    store = FeatureCache(cache_dir) if cache else None
    return _Plan(views, transform, dev, autocast, parts, cache_key(parts), store)


def save_features(path: str | os.PathLike, arrays: dict[str, np.ndarray], *,
                  progress: bool | Reporter = False) -> list[Path]:
    """Write named arrays atomically: one ``.npz``, or ``.npy`` files (the first at
    ``path``, each other beside it as ``<stem>.<name>.npy``, memory-mappable).

    ``progress`` reports the bytes written as a ``writing NAME`` stage (see
    :func:`~dmlp_plugin.progress.reporting`). Returns the paths written.
    """
    path = _output_path(path)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    with reporting(progress) as report:
        if path.suffix.lower() == ".npz":
            with atomic_write(path) as fh, zipfile.ZipFile(fh, "w", allowZip64=True) as archive:
                written = _Written(report, f"writing {path.name}", sum(a.nbytes for a in arrays.values()))
                for name, array in arrays.items():
                    # np.savez's layout (NAME.npy members, stored) written a block at a time
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        _write_npy(member, array, written)
                written.end()
            return [path]
        paths = []
        for i, (name, array) in enumerate(arrays.items()):
            target = path if i == 0 else path.with_name(f"{path.stem}.{name}.npy")
            written = _Written(report, f"writing {target.name}", array.nbytes)
            with atomic_write(target) as fh:
                _write_npy(fh, array, written)
            written.end()
            paths.append(target)
    return paths


class _Written:
    """Bytes written so far of one ``writing`` stage, reported in MiB."""

    def __init__(self, report: Reporter, stage: str, total: int) -> None:
        self.report, self.stage, self.total, self.done = report, stage, -(-total >> 20), 0
        report(stage, 0, self.total, unit="MiB")

    def add(self, n: int) -> None:
        self.done += n
        self.report(self.stage, min(self.done >> 20, self.total), self.total, unit="MiB")

    def end(self) -> None:
        self.report(self.stage, self.total, self.total, unit="MiB")  # the last part of a MiB counts
        self.report.end(self.stage)


def _write_npy(fh: Any, array: np.ndarray, written: _Written, block: int = 64 << 20) -> None:
    """``np.save``'s format, the data in blocks of about ``block`` bytes, so a large array
    is never copied whole and its writing can be reported."""
    array = array if array.flags.c_contiguous or array.flags.f_contiguous else np.ascontiguousarray(array)
    header = np.lib.format.header_data_from_array_1_0(array)  # says which order the bytes are in
    try:
        np.lib.format.write_array_header_1_0(fh, header)
    except ValueError:  # a header over 64 KiB (huge structured dtypes) needs format 2.0
        np.lib.format.write_array_header_2_0(fh, header)
    flat = array.ravel(order="K")  # a view, in memory order: C, or F for a Fortran array
    step = max(1, block // max(array.itemsize, 1))
    for start in range(0, flat.size, step):
        chunk = flat[start:start + step]
        fh.write(chunk.tobytes())
        written.add(chunk.nbytes)


def _output_path(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if path.suffix.lower() not in (".npy", ".npz"):
        raise InputError(f"feature output must end in .npy or .npz, got {path.name!r}")
    if path.is_dir():
        raise InputError(f"feature output {path} is a folder; give a file name")
    return path


class _Images(Dataset):
    """``(tensor, position)`` pairs: the raw images at ``indices`` (every image by
    default) through our own transform; ``position`` is the row in the output."""

    def __init__(self, dataset: ImageDataset, transform: Callable, indices: np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.indices = indices

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        index = position if self.indices is None else int(self.indices[position])
        return self.transform(self.dataset.load_image(index)), position


def _run(dataset: ImageDataset, backbone: str | nn.Module, checkpoint: str | os.PathLike | None,
         transform: Callable, views: tuple[str, ...], *, batch_size: int, device: torch.device,
         autocast: torch.dtype | None, num_workers: int, progress: bool | Reporter, strict: bool,
         trusted: bool, indices: np.ndarray | None = None) -> list[np.ndarray]:
    """Features of the images at ``indices`` (all by default), one array per view, rows in
    the order of ``indices``."""
    # a named backbone starts from a fixed seed, so uncheckpointed (random) features are
    # reproducible and agree with the cache, whose key cannot see the RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_backbone(backbone)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, strict=strict, trusted=trusted)
    elif not isinstance(backbone, nn.Module) and not is_packaged(backbone):
        warnings.warn(f"no checkpoint given: features of {backbone} come from random weights "
                      "(fine for tests; pass checkpoint= for meaningful features)", stacklevel=3)
    was_training = model.training
    model = model.eval().to(device=device, memory_format=torch.channels_last)
    try:
        return _infer(model, dataset, transform, views, batch_size=batch_size, device=device,
                      autocast=autocast, num_workers=num_workers, progress=progress, indices=indices)
    finally:
        model.train(was_training)


def _infer(model: nn.Module, dataset: ImageDataset, transform: Callable, views: tuple[str, ...], *,
           batch_size: int, device: torch.device, autocast: torch.dtype | None, num_workers: int,
           progress: bool, indices: np.ndarray | None = None) -> list[np.ndarray]:
    source = _Images(dataset, transform, indices)
    loader = DataLoader(source, batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=device.type == "cuda")
    outputs: list[np.ndarray] | None = None
    stage, done = f"features ({type(model).__name__})", 0
    with reporting(progress) as report, \
            torch.inference_mode(), \
            torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        report(stage, 0, len(source), unit="images")  # shown before the first batch, which may be slow
        for images, position in loader:
            x = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            feats = [forward_features(model, x if v == "none" else x.flip(3)).float().cpu().numpy()
                     for v in views]
            if outputs is None:
                outputs = [np.empty((len(source), f.shape[1]), dtype=np.float32) for f in feats]
            for out, f in zip(outputs, feats):
                out[position.numpy()] = f
            done += len(position)
            report(stage, done, len(source), unit="images")
        report.end(stage)
    if outputs is None:  # no rows (an empty shard): the width is unknown without a forward pass
        outputs = [np.empty((0, 0), dtype=np.float32) for _ in views]
    return outputs


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if fast_bfloat16(device) else None


def _backbone_id(backbone: str | nn.Module) -> str:
    if isinstance(backbone, nn.Module):
        # a module has no name to trust: identify it by class and current weights
        h = hashlib.sha256(type(backbone).__qualname__.encode())
        for name, tensor in backbone.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return f"module:{type(backbone).__qualname__}:{h.hexdigest()[:16]}"
    return parse_backbone(backbone).name


def _check_views(views: Sequence[str]) -> tuple[str, ...]:
    views = (views,) if isinstance(views, str) else tuple(views)
    if not views or len(set(views)) != len(views) or any(v not in VIEWS for v in views):
        raise InputError(f"views must be distinct entries of {VIEWS}, e.g. ('none',) or ('none', 'hflip'); got {views}")
    return views


def _array_name(view: str) -> str:
    return "features" if view == "none" else f"features_{view}"
