"""The ``coteaching`` adapter: Co-teaching's ``CIFAR10`` dataset.

Co-teaching (https://github.com/bhanML/Co-teaching) keeps the noisy CIFAR labels in
``train_noisy_labels`` (a list, CIFAR order), the clean ones in ``train_labels`` (an
``(N, 1)`` array) and their agreement in ``noise_or_not``, which its "pure ratio" logging
reads. The training loader yields ``(image, label, index)``. The forget rate follows the
residual noise of the purified labels unless ``--forget_rate`` is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dmlp_integrations.coteaching import RECIPE
from dmlp_plugin import hookimpl
from dmlp_plugin.adapter import Adapter, NpyLabelFile, as_label_array
from dmlp_plugin.testing import UpstreamStandIn

__all__ = ["CoteachingAdapter"]


class CoteachingAdapter(NpyLabelFile, Adapter):
    """Purified labels for Co-teaching: ``train_noisy_labels`` and ``noise_or_not``, identity order."""

    name = "coteaching"
    description = "Co-teaching (Han et al. 2018): main.py, train_noisy_labels; forget rate follows residual noise"
    integration = RECIPE
    dataset_kind = "Co-teaching's training CIFAR10"
    batch_layout = (1, 2)

    def get_labels(self, dataset: Any) -> np.ndarray:
        return as_label_array(self.dataset_attribute(dataset, "train_noisy_labels"), what="train_noisy_labels")

    def set_labels(self, dataset: Any, labels: np.ndarray) -> None:
        self.dataset_attribute(dataset, "train_noisy_labels")
        labels = np.asarray(labels, dtype=np.int64)
        dataset.train_noisy_labels = [int(y) for y in labels]
        clean = self.clean_labels(dataset)
        if clean is not None:
            # Co-teaching logs the fraction of kept samples whose label is right from this mask.
            dataset.noise_or_not = labels == clean

    def clean_labels(self, dataset: Any) -> np.ndarray | None:
        clean = getattr(dataset, "train_labels", None)
        if clean is None:
            return None
        return np.asarray(clean, dtype=np.int64).reshape(len(clean), -1)[:, 0]

    def residual_noise_settings(self, args: Any, rate: float, *, explicit: set[str] = frozenset()) -> dict[str, Any]:
        # Co-teaching drops the forget_rate fraction of large-loss samples per batch; its default
        # (the noise rate the labels were drawn with) would throw away mostly clean purified labels.
        if "forget_rate" in explicit or getattr(args, "forget_rate", None) is not None:
            return {}
        return {"forget_rate": round(rate, 4)}

    @classmethod
    def conformance_dataset(cls, labels: np.ndarray) -> Any:
        return _CoteachingLike(labels)


class _CoteachingLike(UpstreamStandIn):
    """The attributes of Co-teaching's training ``CIFAR10``."""

    def __init__(self, labels: np.ndarray) -> None:
        super().__init__(len(labels))
        self.train_noisy_labels = [int(y) for y in labels]
        self.train_labels = np.asarray(labels, dtype=np.int64).reshape(-1, 1)
        self.noise_or_not = np.ones(len(labels), bool)

    def item(self, index: int) -> tuple[Any, int, int]:
        return self.train_data[index], self.train_noisy_labels[index], index


@hookimpl
def dmlp_register_adapters(register: Any) -> None:
    register(CoteachingAdapter)
