"""Choosing the torch device: CUDA when available, else CPU, never hard-coded."""

from __future__ import annotations

from typing import Any

from .errors import InputError

__all__ = ["choose_device"]


def choose_device(device: Any = None):
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but CUDA is not available on this machine")
    return dev
