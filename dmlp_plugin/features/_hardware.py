"""What the hardware does fast, for choosing precisions."""

from __future__ import annotations

import torch

__all__ = ["fast_bfloat16"]


def fast_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run on matrix units here (CPU AMX tiles).

    Uses torch's private probe, guarded: where it is missing or fails, the answer is no,
    which only costs speed.
    """
    if device.type != "cpu":
        return False
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False
