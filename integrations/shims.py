"""Small stand-ins for upstream dependencies that do not install on a modern stack.

``provide("torchnet")`` or ``provide("mlflow")``, called by an inserted line before the
upstream imports the package, registers a stand-in module only when the real package
cannot be imported, so a user who has it keeps it.

* ``torchnet`` (DivideMix): an sdist that needs ``setuptools<81``; DivideMix uses only
  ``torchnet.meter.AUCMeter`` to log how well its clean/noisy split ranks samples.
* ``mlflow`` (ELR+): imported unconditionally by ``train.py`` for optional experiment
  tracking. The stand-in accepts every call and records nothing.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import numpy as np

__all__ = ["provide", "AUCMeter"]


class AUCMeter:
    """Area under the ROC curve of scores against binary targets (torchnet's meter API).

    ``add(output, target)`` accumulates scores and 0/1 targets (arrays or tensors);
    ``value()`` returns ``(area, tpr, fpr)``, the curve swept from the highest score down.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.scores = np.zeros(0, np.float64)
        self.targets = np.zeros(0, np.int64)

    def add(self, output: Any, target: Any) -> None:
        output = np.asarray(output.detach().cpu() if hasattr(output, "detach") else output, np.float64).reshape(-1)
        target = np.asarray(target.detach().cpu() if hasattr(target, "detach") else target).reshape(-1)
        if output.shape != target.shape:
            raise ValueError(f"AUCMeter.add: {output.size} scores for {target.size} targets")
        if target.size and not np.all((target == 0) | (target == 1)):
            raise ValueError("AUCMeter.add: targets must be 0 or 1")
        self.scores = np.concatenate([self.scores, output])
        self.targets = np.concatenate([self.targets, target.astype(np.int64)])

    def value(self) -> tuple[float, np.ndarray, np.ndarray]:
        if self.scores.size == 0:
            return 0.5, np.zeros(1), np.zeros(1)
        order = np.argsort(-self.scores, kind="stable")
        hits = self.targets[order]
        pos, neg = hits.sum(), hits.size - hits.sum()
        tpr = np.concatenate([[0.0], np.cumsum(hits) / max(pos, 1)])
        fpr = np.concatenate([[0.0], np.cumsum(1 - hits) / max(neg, 1)])
        if pos == 0 or neg == 0:
            return 0.5, tpr, fpr
        # Mann-Whitney U with mid-ranks for ties: the exact area under the step curve.
        ranks = _midranks(self.scores)
        area = (ranks[self.targets == 1].sum() - pos * (pos + 1) / 2) / (pos * neg)
        return float(area), tpr, fpr


def _midranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    ranks = np.empty(values.size, np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], values.size]
    for s, e in zip(starts, ends):  # one step per distinct value
        ranks[order[s:e]] = (s + e + 1) / 2
    return ranks


class _Anything:
    """Callable, a context manager, and every attribute: what the mlflow stand-in returns."""

    def __call__(self, *args: Any, **kwargs: Any) -> "_Anything":
        return self

    def __getattr__(self, name: str) -> "_Anything":
        if name.startswith("__"):  # introspection (inspect, pickle, copy) must see a plain object
            raise AttributeError(name)
        return self

    def __enter__(self) -> "_Anything":
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False


def _stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name, f"dmlp-plugin stand-in for {name} (not installed)")
    def __getattr__(attr: str) -> _Anything:
        if attr.startswith("__"):
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        return _Anything()

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    module.__dmlp_stand_in__ = True  # type: ignore[attr-defined]
    return module


def provide(name: str) -> bool:
    """Register a stand-in for ``name`` if it cannot be imported; returns whether it did."""
    if name in sys.modules or importlib.util.find_spec(name) is not None:
        return False
    if name == "torchnet":
        root, meter = _stand_in("torchnet"), types.ModuleType("torchnet.meter")
        meter.AUCMeter = AUCMeter  # type: ignore[attr-defined]
        root.meter = meter  # type: ignore[attr-defined]
        sys.modules.update({"torchnet": root, "torchnet.meter": meter})
    elif name == "mlflow":
        root = _stand_in("mlflow")
        sub = _stand_in("mlflow.pytorch")
        root.pytorch = sub  # type: ignore[attr-defined]
        sys.modules.update({"mlflow": root, "mlflow.pytorch": sub})
    else:
        raise ValueError(f"no stand-in for {name!r}; dmlp-plugin provides torchnet and mlflow")
    return True
