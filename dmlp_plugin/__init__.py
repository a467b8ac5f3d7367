"""dmlp-plugin: DMLP label purification for learning-with-noisy-labels codebases.

    >>> from dmlp_plugin import purify_dataset
    >>> result = purify_dataset(features, noisy_labels, val_indices=idx, val_labels=clean[idx])
    >>> result.labels          # purified hard labels, original order
    >>> result.save("purified.npz")

Public names are imported lazily, so ``import dmlp_plugin`` (and ``dmlp --help``) stays
fast and torch loads only when purification needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

# name -> submodule that defines it
_EXPORTS = {
    "purify_dataset": "purify",
    "PurifyResult": "result",
    "PurifyConfig": "config",
    "AccuracyEstimate": "accuracy_estimate",
    "DmlpError": "errors",
    "InputError": "errors",
    "ShapeError": "errors",
    "LabelError": "errors",
    "ConfigError": "errors",
    "DataFileError": "errors",
    "MissingFileError": "errors",
    "CorruptFileError": "errors",
    "PluginLoadError": "errors",
    "UnknownAdapterError": "errors",
    "AdapterError": "errors",
    "AlignmentError": "errors",
    "export_labels": "io",
    "make_noisy_labels": "noise",
    "load_cifar_n": "noise",
    "NoiseResult": "noise",
    "load_dataset": "data",
    "extract_features": "features",
    "hookimpl": "hookspecs",
    "Adapter": "adapter",
    "get_adapter": "plugins",
    "list_adapters": "plugins",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dmlp_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
