"""Choosing the torch device: CUDA when available, else CPU, never hard-coded."""

from __future__ import annotations

from typing import Any

from .errors import InputError

__all__ = ["choose_device", "native_bfloat16", "resolve_precision"]


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


def native_bfloat16(device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware (AMX or AVX512-BF16 on
    CPU, compute capability 8.0+ on CUDA); elsewhere bfloat16 products are emulated and
    slower than float32."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return True  # other backends: let them decide
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, so guarded
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(choice: str, device) -> str:
    """A precision setting on ``device``: ``"auto"`` is ``"bfloat16"`` where the device
    multiplies bfloat16 matrices in hardware and ``"float32"`` elsewhere (where bfloat16
    would be emulated, and slower); ``"float32"`` and ``"bfloat16"`` stay as they are."""
    if choice != "auto":
        return choice
    return "bfloat16" if native_bfloat16(device) else "float32"
