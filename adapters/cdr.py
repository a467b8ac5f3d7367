"""The ``cdr`` adapter: CDR's ``cifar10_dataset`` and its seeded 90/10 split.

CDR (https://github.com/xiaoboxia/CDR) splits the 50,000 CIFAR-10 training samples with
``np.random.seed(seed); train = np.random.choice(N, int(N * split_per), replace=False)``;
the validation part is the rest, in index order. A ``cifar10_dataset`` holds
``train_labels`` (``train=True``) or ``val_labels`` (``train=False``), and its loader
yields ``(image, label, index)``. ``--noise_rate`` follows the residual noise of the
purified labels (CDR keeps ``1 - noise_rate`` of each layer's gradient entries).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from dmlp_integrations.cdr import RECIPE
from dmlp_plugin import hookimpl
from dmlp_plugin.adapter import Adapter, IndexMap, NpyLabelFile, SeededSplitMap, as_label_array
from dmlp_plugin.testing import UpstreamStandIn

__all__ = ["CDRAdapter", "cdr_split"]

#: CDR's --noise_rate must stay above 0: its symmetric noisify draws nothing at 0 and fails.
MIN_NOISE_RATE = 0.01


def cdr_split(num_samples: int, seed: int, *, split_per: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """CDR's ``tools.dataset_split`` indices: ``(train, val)``, drawn without touching global state."""
    train = np.random.RandomState(seed).choice(num_samples, int(num_samples * split_per), replace=False)
    val = np.delete(np.arange(num_samples), train)
    return train.astype(np.int64), val.astype(np.int64)


class CDRAdapter(NpyLabelFile, Adapter):
    """Purified labels for CDR: both halves of its seeded split.

    Parameters
    ----------
    seed
        CDR's ``--seed`` (default 1).
    split_per
        CDR's ``--split_percentage`` (default 0.9).
    """

    name = "cdr"
    description = "CDR (Xia et al. 2021): main.py, seeded 45k/5k split; --noise_rate follows residual noise"
    integration = RECIPE
    dataset_kind = "CDR's cifar10_dataset"
    batch_layout = (1, 2)

    def __init__(self, *, seed: int = 1, split_per: float = 0.9) -> None:
        self.seed, self.split_per = int(seed), float(split_per)

    def index_map(self, dataset: Any = None) -> IndexMap:
        part = "train" if dataset is None or getattr(dataset, "train", True) else "val"
        return SeededSplitMap(self.seed, part=part, recipe=partial(cdr_split, split_per=self.split_per))

    def get_labels(self, dataset: Any) -> np.ndarray:
        return as_label_array(np.asarray(self.dataset_attribute(dataset, self._attribute(dataset))).reshape(-1),
                              what=self._attribute(dataset))

    def set_labels(self, dataset: Any, labels: np.ndarray) -> None:
        name = self._attribute(dataset)
        old = np.asarray(self.dataset_attribute(dataset, name))
        setattr(dataset, name, np.asarray(labels).astype(old.dtype).reshape(old.shape))

    def residual_noise_settings(self, args: Any, rate: float, *, explicit: set[str] = frozenset()) -> dict[str, Any]:
        return {"noise_rate": round(max(rate, MIN_NOISE_RATE), 4)}

    @staticmethod
    def _attribute(dataset: Any) -> str:
        return "train_labels" if getattr(dataset, "train", True) else "val_labels"

    @classmethod
    def conformance_dataset(cls, labels: np.ndarray) -> Any:
        return _CDRLike(labels, seed=1, split_per=0.9)


class _CDRLike(UpstreamStandIn):
    """The attributes of CDR's training ``cifar10_dataset``."""

    train = True

    def __init__(self, labels: np.ndarray, *, seed: int, split_per: float) -> None:
        train, _ = cdr_split(len(labels), seed, split_per=split_per)
        super().__init__(len(train))
        self.train_labels = np.asarray(labels)[train]

    def item(self, index: int) -> tuple[Any, int, int]:
        return self.train_data[index], int(self.train_labels[index]), index


@hookimpl
def dmlp_register_adapters(register: Any) -> None:
    register(CDRAdapter)
