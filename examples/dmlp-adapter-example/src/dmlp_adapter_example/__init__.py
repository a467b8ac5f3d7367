"""dmlp-adapter-example: a dmlp-plugin adapter for the toylnl codebase.

Installed, this module is found through the ``dmlp_plugin`` entry point declared in
``pyproject.toml``; dmlp-plugin then calls :func:`dmlp_register_adapters`, and the
adapter shows up in ``dmlp adapters list`` and ``get_adapter("toylnl")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from dmlp_plugin import Adapter, hookimpl
from dmlp_plugin.adapter import IndexMap, SeededSplitMap, as_label_array
from dmlp_plugin.io import PathLike, atomic_write

__all__ = ["ToyLNLAdapter"]
__version__ = "0.1.0"


class ToyLNLAdapter(Adapter):
    """Purified labels for toylnl.

    toylnl reads a label file for the whole training set (one integer per line, in
    sample order) and then splits it with ``np.random.seed(split_seed)``; its dataset
    object keeps the training part's labels in ``train_noisy_labels``. So the file is
    written in dataset order, and injection goes through the same split, recomputed.

    Parameters
    ----------
    val_ratio, split_seed
        toylnl's ``val_ratio`` and ``--seed``; they must match the run you inject into.
    """

    name = "toylnl"
    upstream = "toylnl (examples/dmlp-adapter-example/src/toylnl in dmlp-plugin)"
    upstream_commits = ("0.1.0",)
    label_format = "txt"
    label_suffix = ".txt"
    description = "the toy codebase shipped with dmlp-adapter-example"

    def __init__(self, *, val_ratio: float = 0.1, split_seed: int = 1) -> None:
        self.val_ratio = val_ratio
        self.split_seed = split_seed

    def index_map(self, dataset: Any = None) -> IndexMap:
        # toylnl permutes with the global seed and puts validation first, which is what
        # the default recipe (permutation_split) recomputes, without touching global state.
        return SeededSplitMap(self.split_seed, num_val=float(self.val_ratio), part="train")

    def write_labels(self, labels: np.ndarray, path: PathLike) -> Path:
        with atomic_write(path, "w") as fh:
            fh.write("".join(f"{int(y)}\n" for y in labels))
        return Path(path)

    def read_labels(self, path: PathLike) -> np.ndarray:
        return as_label_array(np.loadtxt(path, dtype=np.int64, ndmin=1))

    def get_labels(self, dataset: Any) -> np.ndarray:
        return np.asarray(dataset.train_noisy_labels, dtype=np.int64)

    def set_labels(self, dataset: Any, labels: np.ndarray) -> None:
        dataset.train_noisy_labels = [int(y) for y in labels]  # toylnl indexes a list

    @classmethod
    def conformance_dataset(cls, labels: np.ndarray) -> Any:
        from toylnl.data import NoisyBlobs

        adapter = cls()
        features = np.zeros((len(labels), 2), dtype=np.float32)
        return NoisyBlobs(features, labels, val_ratio=adapter.val_ratio, split_seed=adapter.split_seed)


@hookimpl
def dmlp_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(ToyLNLAdapter)
