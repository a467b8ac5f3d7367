"""Features from frozen encoders: backbones and checkpoints, cached batched extraction,
SimCLR pretraining, CPU k-means features, and a linear probe to score them.

    >>> from dmlp_plugin.data import load_dataset
    >>> from dmlp_plugin.features import dataset_features, extract_features, kmeans_features, linear_probe
    >>> train, test = load_dataset("cifar10", "~/data"), load_dataset("cifar10", "~/data", "test")
    >>> f, f_flip = extract_features(train, "resnet18-cifar", checkpoint="simclr.pt",
    ...                              views=("none", "hflip"))
    >>> k_train, k_test = kmeans_features(train, test)          # CPU, no labels
    >>> f_train, f_test = dataset_features(train, "resnet18-cifar", checkpoint="simclr.pt",
    ...                                    others=[test])        # plugins first; torchrun-aware
    >>> linear_probe(k_train, train.targets, k_test, test.targets)

Names are imported lazily, so importing this package (and ``dmlp --help``) does not load
torch until a name that needs it is used.
"""

from __future__ import annotations

from .._lazy import lazy_exports

# name -> submodule that defines it
_EXPORTS = {
    "extract_features": "extract",
    "save_features": "extract",
    "default_transform": "extract",
    "dataset_features": "dataset",
    "BackboneSpec": "backbones",
    "parse_backbone": "backbones",
    "create_backbone": "backbones",
    "feature_dim": "backbones",
    "load_checkpoint": "checkpoints",
    "read_state_dict": "checkpoints",
    "LoadReport": "checkpoints",
    "FeatureCache": "cache",
    "default_cache_dir": "cache",
    "KMeansFeatures": "kmeans",
    "kmeans_features": "kmeans",
    "SimCLRConfig": "config",
    "pretrain_simclr": "simclr",
    "SimCLRResult": "simclr",
    "linear_probe": "probe",
    "fit_linear_classifier": "probe",
    "LinearClassifier": "probe",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
