"""The purifier engine: pure torch, no plugin layer.

- :mod:`.ipc`: batched closed-form least squares and the trusted-set loss gradient.
- :mod:`.label_update`: Adam/SGD on label variables, simplex projection.
- :mod:`.eac`: the linear auxiliary head.
- :mod:`.posterior`: noise-transition posterior (an addition to the paper).
- :mod:`.purifier`: the epoch loop tying them together.
"""

from .purifier import EngineOutput, purify_tensors

__all__ = ["purify_tensors", "EngineOutput"]
