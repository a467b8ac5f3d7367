"""Softmax and log-softmax over a short last dimension, fast on CPU.

Label tensors end in a class dimension of about ten entries. On CPU, ``torch.softmax``
over such a dimension runs about 7× slower than the same arithmetic written out as three
elementwise passes (8 ms against 1.2 ms on a 7 × 7000 × 10 tensor, one thread): its
kernel vectorises along the softmax dimension, which here is too short. On other devices
the fused kernel is used.
"""

from __future__ import annotations

import torch

__all__ = ["softmax_rows", "log_softmax_rows"]


def softmax_rows(x: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(x, -1)`` (a new tensor)."""
    if x.device.type != "cpu":
        return torch.softmax(x, -1)
    p = (x - x.amax(-1, keepdim=True)).exp_()
    return p.div_(p.sum(-1, keepdim=True))


def log_softmax_rows(x: torch.Tensor) -> torch.Tensor:
    """``torch.log_softmax(x, -1)`` (a new tensor)."""
    if x.device.type != "cpu":
        return torch.log_softmax(x, -1)
    shifted = x - x.amax(-1, keepdim=True)
    return shifted.sub_(shifted.exp().sum(-1, keepdim=True).log_())
