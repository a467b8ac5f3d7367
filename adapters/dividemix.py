"""The ``dividemix`` adapter: DivideMix's ``cifar_dataset`` and its noise JSON.

DivideMix (https://github.com/LiJunnan1992/DivideMix) keeps the noisy labels of CIFAR in
``cifar_dataset.noise_label``, a list in CIFAR order, read from a JSON list. In mode
``"all"`` (warm-up and eval) the dataset yields ``(image, label, index)``; in the
``"labeled"`` and ``"unlabeled"`` modes it holds the co-divided subsets, whose indices it
does not keep, so only ``"all"`` datasets are checked at the loader. ``dmlp integrate
dividemix CLONE`` applies :data:`dmlp_integrations.dividemix.RECIPE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dmlp_integrations.dividemix import RECIPE
from dmlp_plugin import hookimpl
from dmlp_plugin.adapter import Adapter, IdentityMap, IndexMap, as_label_array
from dmlp_plugin.errors import AdapterError
from dmlp_plugin.io import PathLike, export_labels, load_array
from dmlp_plugin.testing import UpstreamStandIn

__all__ = ["DivideMixAdapter"]


class DivideMixAdapter(Adapter):
    """Purified labels for DivideMix: a JSON list in CIFAR order, injected as ``noise_label``."""

    name = "dividemix"
    label_format = "dividemix-json"
    label_suffix = ".json"
    description = "DivideMix (Li et al. 2020): Train_cifar.py, noise_label from <data_path>/<r>_<mode>.json"
    integration = RECIPE
    dataset_kind = "DivideMix's cifar_dataset"
    reads_given_labels = True
    batch_layout = (1, 2)

    def index_map(self, dataset: Any = None) -> IndexMap:
        if dataset is not None and getattr(dataset, "mode", "all") != "all":
            raise AdapterError(f"adapter 'dividemix': a {dataset.mode!r} dataset holds a co-divided subset whose "
                               "indices DivideMix does not keep; only 'all' datasets map to CIFAR indices")
        return IdentityMap()

    def write_labels(self, labels: np.ndarray, path: PathLike) -> Path:
        return export_labels(as_label_array(labels), path, "dividemix")

    def read_labels(self, path: PathLike) -> np.ndarray:
        return as_label_array(load_array(path, what="DivideMix noise"), what=f"labels in {path}")

    def get_labels(self, dataset: Any) -> np.ndarray:
        return as_label_array(self.dataset_attribute(dataset, "noise_label"), what="noise_label")

    def set_labels(self, dataset: Any, labels: np.ndarray) -> None:
        self.dataset_attribute(dataset, "noise_label")
        dataset.noise_label = [int(y) for y in labels]

    def loader_yields_labels(self, dataset: Any) -> bool:
        return getattr(dataset, "mode", None) == "all"

    @classmethod
    def conformance_dataset(cls, labels: np.ndarray) -> Any:
        return _AllModeDataset(labels)


class _AllModeDataset(UpstreamStandIn):
    """The attributes of DivideMix's ``cifar_dataset`` in mode ``"all"``."""

    mode = "all"

    def __init__(self, labels: np.ndarray) -> None:
        super().__init__(len(labels))
        self.noise_label = [int(y) for y in labels]

    def item(self, index: int) -> tuple[Any, int, int]:
        return self.train_data[index], self.noise_label[index], index


@hookimpl
def dmlp_register_adapters(register: Any) -> None:
    register(DivideMixAdapter)
