"""Choosing the torch device for feature code: CUDA when present, never hard-coded."""

from __future__ import annotations

import torch

from ..errors import InputError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when available, else CPU; strings are checked, not trusted.

    Raises :class:`InputError` for a name torch does not know or a CUDA device on a
    machine without one, instead of failing later inside a kernel.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but CUDA is not available; use 'cpu'")
    return dev
