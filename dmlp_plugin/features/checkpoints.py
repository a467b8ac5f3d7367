"""Loading self-supervised checkpoints into a backbone, whatever wrapped the encoder.

SimCLR, MoCo, BYOL and similar training code save the encoder under a prefix
(``module.`` from DataParallel, ``encoder_q.`` in MoCo, ``backbone.`` in SimCLR and
solo-learn, ``online_network.encoder.`` in BYOL, ...) next to parts the backbone does not
have (projection heads, predictors, momentum encoders, MoCo's queue). Each key is peeled
of known prefixes until it names a backbone parameter; keys rooted at a known head are
dropped; anything else is reported. Nothing is loaded unless every backbone tensor is
found with the right shape (or ``strict=False``), so a checkpoint of another
architecture fails loudly instead of leaving a half-random model.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import CorruptFileError, InputError, MissingFileError

__all__ = ["LoadReport", "load_checkpoint", "read_state_dict", "remap_state_dict", "file_sha256", "load_torch_file"]

# Containers a training script nests the weights in, tried in this order.
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "encoder", "online_network", "net", "backbone")
# Prefixes peeled off, repeatedly, until a key names a backbone parameter.
STRIP_PREFIXES = ("module.", "encoder_q.", "base_encoder.", "online_network.", "backbone.", "encoder.",
                  "model.", "net.", "body.")
# First components of keys that belong to heads or second networks, never to the backbone.
DROP_ROOTS = ("fc", "head", "heads", "classifier", "projector", "projection", "projection_head",
              "predictor", "prediction", "online_predictor", "encoder_k", "target_network", "target_encoder",
              "momentum_backbone", "momentum_projector", "momentum_encoder", "queue", "queue_ptr", "prototypes")
# How many offending keys an error message lists.
SHOW = 8


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did with each key.

    Attributes
    ----------
    loaded : list of str
        Backbone keys filled from the checkpoint.
    missing : list of str
        Backbone keys the checkpoint did not provide (left as initialised).
    unexpected : list of str
        Checkpoint keys (as stored) that matched nothing and are not a known head.
    mismatched : list of (str, tuple, tuple)
        ``(key, checkpoint shape, backbone shape)`` for keys whose shapes differ.
    dropped : list of str
        Checkpoint keys skipped as heads or second networks (projection MLP, queue, ...).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """A multi-line account of every problem, listing the first keys of each kind."""
        lines = [f"{len(self.loaded)} tensors matched, {len(self.dropped)} head tensors dropped"]
        if self.mismatched:
            lines.append(f"{len(self.mismatched)} with a different shape (checkpoint vs backbone): " + ", ".join(
                f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched[:SHOW]) + _more(self.mismatched))
        if self.missing:
            lines.append(f"{len(self.missing)} backbone tensors missing from the checkpoint: "
                         + ", ".join(self.missing[:SHOW]) + _more(self.missing))
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} checkpoint tensors not in the backbone: "
                         + ", ".join(self.unexpected[:SHOW]) + _more(self.unexpected))
        return "\n  ".join(lines)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks), hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_torch_file(path: str | os.PathLike, *, trusted: bool = False) -> Any:
    """``torch.load`` on CPU with clear errors; tensors and plain containers only unless
    ``trusted`` (see :func:`read_state_dict`).

    Raises
    ------
    MissingFileError
        No such file.
    CorruptFileError
        Not a torch file, damaged, or (untrusted) pickling other objects.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    # torch.save writes a zip (b"PK"), older versions a pickle (protocol byte 0x80)
    if not (magic == b"PK" or magic[:1] == b"\x80"):
        raise CorruptFileError(f"cannot read checkpoint {path}: not a torch.save file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        raise CorruptFileError(
            f"checkpoint {path} holds objects other than tensors and plain containers, which are not "
            f"unpickled by default, since unpickling can run code from the file ({str(exc).splitlines()[0]}). "
            "If you trust the file, load it with trusted=True, or extract features with "
            "`dmlp features --checkpoint FILE --trust-checkpoint ...` and pass them to `dmlp purify --features`"
            ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CorruptFileError(f"cannot read checkpoint {path}: {exc}") from exc


def read_state_dict(path: str | os.PathLike, *, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from the usual containers.

    Accepts a raw state dict, or a dict holding one under ``state_dict``, ``model``,
    ``encoder``, ... (see ``CONTAINER_KEYS``), possibly nested, as training scripts write.

    Parameters
    ----------
    path
        A ``torch.save`` file.
    trusted
        Allow full unpickling. By default only tensors and plain containers are read
        (``weights_only=True``), which cannot run code from the file; checkpoints that
        also pickle arbitrary objects (argparse namespaces, custom classes) need
        ``trusted=True``.

    Raises
    ------
    MissingFileError
        No such file.
    CorruptFileError
        The file cannot be read as a torch checkpoint, or holds no tensors.
    """
    path = Path(path).expanduser()
    obj = load_torch_file(path, trusted=trusted)
    state = _unwrap(obj)
    if state is None:
        top = sorted(obj)[:SHOW] if isinstance(obj, Mapping) else type(obj).__name__
        raise CorruptFileError(f"checkpoint {path} holds no state dict of tensors (found {top})")
    return state


def remap_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Rename checkpoint keys onto ``model``'s, dropping heads; report the rest.

    Returns
    -------
    (dict, LoadReport)
        The tensors to load under the model's names, and the report.
    """
    target = model.state_dict()
    report = LoadReport()
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name, head = _match(key, target)
        if name is None:
            (report.dropped if head else report.unexpected).append(key)
            continue
        if tuple(tensor.shape) != tuple(target[name].shape):
            report.mismatched.append((name, tuple(tensor.shape), tuple(target[name].shape)))
            continue
        if name in mapped:
            # two checkpoint keys collapsed onto one name (e.g. online and target encoder
            # under prefixes we strip): keep the first and say so
            report.unexpected.append(key)
            continue
        mapped[name] = tensor
        report.loaded.append(name)
    # BatchNorm's step counter does not affect features; old checkpoints lack it
    misfit = {name for name, _, _ in report.mismatched}
    report.missing = [k for k in target
                      if k not in mapped and k not in misfit and not k.endswith("num_batches_tracked")]
    return mapped, report


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True,
                    trusted: bool = False) -> LoadReport:
    """Load a self-supervised checkpoint into ``model`` (in place), remapping prefixes.

    Parameters
    ----------
    model
        The backbone, e.g. from :func:`~dmlp_plugin.features.backbones.create_backbone`.
    path
        A checkpoint from SimCLR/MoCo/BYOL-style training, ``dmlp pretrain``, or a plain
        ``torch.save(model.state_dict())``.
    strict
        Refuse unless every backbone tensor is found with the right shape and every
        checkpoint tensor is used or a known head. With ``strict=False`` what matches is
        loaded, the rest is reported in a warning, and only a checkpoint matching nothing
        (or with shape mismatches) is refused.
    trusted
        See :func:`read_state_dict`.

    Returns
    -------
    LoadReport

    Raises
    ------
    InputError
        The checkpoint does not fit the backbone; the message lists the first
        mismatched, missing and unexpected keys with shapes.
    MissingFileError, CorruptFileError
        See :func:`read_state_dict`.
    """
    state = read_state_dict(path, trusted=trusted)
    mapped, report = remap_state_dict(state, model)
    if report.mismatched or not report.loaded or (strict and not report.ok):
        raise InputError(f"checkpoint {path} does not match the backbone {type(model).__name__}:\n  "
                         f"{report.describe()}\nIs it a checkpoint of another architecture (or of the "
                         "CIFAR stem when the backbone has the ImageNet one, or vice versa)?")
    if not report.ok:
        warnings.warn(f"checkpoint {path} loaded partially: {report.describe()}", stacklevel=2)
    model.load_state_dict(mapped, strict=False)
    return report


def _unwrap(obj: Any, depth: int = 0) -> dict[str, torch.Tensor] | None:
    if not isinstance(obj, Mapping) or depth > 3:
        return None
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    # a raw state dict is (nearly) all tensors; a training checkpoint holds a few containers
    if tensors and len(tensors) >= len(obj) / 2:
        return tensors
    for key in CONTAINER_KEYS:
        found = _unwrap(obj.get(key), depth + 1)
        if found is not None:
            return found
    return None


def _match(key: str, target: Mapping[str, torch.Tensor]) -> tuple[str | None, bool]:
    """``(backbone name, False)``, or ``(None, True)`` for a head, ``(None, False)`` for no match."""
    name = key
    while name not in target:
        if name.split(".", 1)[0] in DROP_ROOTS:
            return None, True
        for prefix in STRIP_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        else:
            return None, False
    return name, False


def _more(items: list) -> str:
    return f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
