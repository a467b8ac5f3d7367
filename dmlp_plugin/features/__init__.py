"""Features from frozen encoders: backbones and checkpoints, cached batched extraction,
SimCLR pretraining, CPU k-means features, and a linear probe to score them.

    >>> from dmlp_plugin.data import load_dataset
    >>> from dmlp_plugin.features import extract_features, KMeansFeatures, linear_probe
    >>> train = load_dataset("cifar10", "~/data")
    >>> f, f_flip = extract_features(train, "resnet18-cifar", checkpoint="simclr.pt",
    ...                              views=("none", "hflip"))
    >>> km = KMeansFeatures(1600, output_dim=512)
    >>> f_train = km.fit_transform(train.images)
"""

from .backbones import BackboneSpec, create_backbone, feature_dim, parse_backbone
from .cache import FeatureCache, default_cache_dir
from .checkpoints import LoadReport, load_checkpoint, read_state_dict
from .extract import default_transform, extract_features, save_features
from .kmeans import KMeansFeatures
from .probe import LinearClassifier, fit_linear_classifier, linear_probe

__all__ = [
    "extract_features",
    "save_features",
    "default_transform",
    "BackboneSpec",
    "parse_backbone",
    "create_backbone",
    "feature_dim",
    "load_checkpoint",
    "read_state_dict",
    "LoadReport",
    "FeatureCache",
    "default_cache_dir",
    "KMeansFeatures",
    "linear_probe",
    "fit_linear_classifier",
    "LinearClassifier",
]
