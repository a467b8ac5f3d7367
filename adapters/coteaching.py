"""The ``coteaching`` adapter: Co-teaching's ``CIFAR10`` dataset.

Co-teaching (https://github.com/bhanML/Co-teaching) keeps the noisy CIFAR labels in
``train_noisy_labels`` (a list, CIFAR order), the clean ones in ``train_labels`` (an
``(N, 1)`` array) and their agreement in ``noise_or_not``, which its "pure ratio" logging
reads. The training loader yields ``(image, label, index)``. The forget rate follows the
residual noise of the purified labels unless ``--forget_rate`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dmlp_integrations.coteaching import RECIPE
from dmlp_plugin import hookimpl
from dmlp_plugin.adapter import Adapter, as_label_array
from dmlp_plugin.errors import AdapterError
from dmlp_plugin.io import PathLike, export_labels, load_array

__all__ = ["CoteachingAdapter"]


class CoteachingAdapter(Adapter):
    """Purified labels for Co-teaching: ``train_noisy_labels`` and ``noise_or_not``, identity order."""

    name = "coteaching"
    upstream = RECIPE.upstream
    upstream_commits = RECIPE.commits
    label_format = "npy"
    label_suffix = ".npy"
    description = "Co-teaching (Han et al. 2018): main.py, train_noisy_labels; forget rate follows residual noise"
    integration = RECIPE
    batch_layout = (1, 2)

    def write_labels(self, labels: np.ndarray, path: PathLike) -> Path:
        return export_labels(as_label_array(labels), path, "npy")

    def read_labels(self, path: PathLike) -> np.ndarray:
        return as_label_array(load_array(path, what="labels"), what=f"labels in {path}")

    def get_labels(self, dataset: Any) -> np.ndarray:
        return as_label_array(_attr(dataset, "train_noisy_labels"), what="train_noisy_labels")

    def set_labels(self, dataset: Any, labels: np.ndarray) -> None:
        _attr(dataset, "train_noisy_labels")
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


class _CoteachingLike:
    """The attributes of Co-teaching's training ``CIFAR10``, without its code."""

    def __init__(self, labels: np.ndarray) -> None:
        self.train_noisy_labels = [int(y) for y in labels]
        self.train_labels = np.asarray(labels, dtype=np.int64).reshape(-1, 1)
        self.noise_or_not = np.ones(len(labels), bool)
        self.train_data = np.zeros((len(labels), 2, 2, 3), np.uint8)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        return self.train_data[index], self.train_noisy_labels[index], index

    def __len__(self) -> int:
        return len(self.train_data)


def _attr(dataset: Any, name: str) -> Any:
    try:
        return getattr(dataset, name)
    except AttributeError:
        raise AdapterError(f"adapter 'coteaching': {type(dataset).__name__} has no {name!r}; expected "
                           "Co-teaching's training CIFAR10") from None


@hookimpl
def dmlp_register_adapters(register: Any) -> None:
    register(CoteachingAdapter)
