"""dmlp-plugin: DMLP label purification for learning-with-noisy-labels codebases.

    >>> from dmlp_plugin import purify_dataset
    >>> result = purify_dataset(features, noisy_labels, val_indices=idx, val_labels=clean[idx])
    >>> result.labels          # purified hard labels, original order
    >>> result.save("purified.npz")

Public names are imported lazily, so ``import dmlp_plugin`` (and ``dmlp --help``) stays
fast and torch loads only when purification needs it.
"""

from __future__ import annotations

from ._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
