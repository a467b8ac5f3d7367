"""The ``elr_plus`` adapter: ELR+'s ``CIFAR10_train`` / ``CIFAR10_val``.

ELR+ (https://github.com/shengliu66/ELR, folder ``ELR_plus``) keeps the labels of each half
of its split in ``train_labels`` (an int array) and the clean ones in ``train_labels_gt``;
the training half keeps its CIFAR indices in ``indexs``. Its loaders yield
``(image, label, index, clean_label)``. The split is unseeded, so the index map is read
from the dataset object, never recomputed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dmlp_integrations.elr_plus import RECIPE
from dmlp_plugin import hookimpl
from dmlp_plugin.adapter import (Adapter, IdentityMap, IndexMap, NpyLabelFile, StoredIndexMap, as_label_array)
from dmlp_plugin.errors import AdapterError
from dmlp_plugin.testing import UpstreamStandIn

__all__ = ["ELRPlusAdapter"]


class ELRPlusAdapter(NpyLabelFile, Adapter):
    """Purified labels for ELR+: ``train_labels`` of each half of its unseeded split."""

    name = "elr_plus"
    description = "ELR+ (Liu et al. 2020): ELR_plus/train.py, both halves of its unseeded 45k/5k split"
    integration = RECIPE
    dataset_kind = "ELR+'s CIFAR10_train or CIFAR10_val"
    batch_layout = (1, 2)

    def index_map(self, dataset: Any = None) -> IndexMap:
        if dataset is None:  # label files are in CIFAR order
            return IdentityMap()
        indices = getattr(dataset, "indexs", None)
        if indices is None:
            raise AdapterError("adapter 'elr_plus': the dataset keeps no 'indexs' (ELR+'s validation half does "
                               "not); pass the split's indices explicitly")
        return StoredIndexMap(np.asarray(indices, dtype=np.int64))

    def get_labels(self, dataset: Any) -> np.ndarray:
        return as_label_array(np.asarray(self.dataset_attribute(dataset, "train_labels")), what="train_labels")

    def set_labels(self, dataset: Any, labels: np.ndarray) -> None:
        old = np.asarray(self.dataset_attribute(dataset, "train_labels"))
        dataset.train_labels = np.asarray(labels).astype(old.dtype)

    def clean_labels(self, dataset: Any) -> np.ndarray | None:
        clean = getattr(dataset, "train_labels_gt", None)
        return None if clean is None else np.asarray(clean, dtype=np.int64)

    @classmethod
    def conformance_dataset(cls, labels: np.ndarray) -> Any:
        return _ELRLike(labels)


class _ELRLike(UpstreamStandIn):
    """The attributes of ELR+'s ``CIFAR10_train``: every other sample, reversed."""

    def __init__(self, labels: np.ndarray) -> None:
        self.indexs = np.arange(len(labels))[::-2].copy()
        super().__init__(len(self.indexs))
        self.train_labels = np.asarray(labels, dtype=np.int64)[self.indexs]
        self.train_labels_gt = self.train_labels.copy()

    def item(self, index: int) -> tuple[Any, int, int, int]:
        return self.train_data[index], int(self.train_labels[index]), index, int(self.train_labels_gt[index])


@hookimpl
def dmlp_register_adapters(register: Any) -> None:
    register(ELRPlusAdapter)
