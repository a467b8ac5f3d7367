"""The ``torchvision`` adapter: any dataset that keeps its labels in a ``targets`` attribute.

That covers torchvision's CIFAR10/CIFAR100, MNIST-style datasets (tensor ``targets``),
``ImageFolder``/``DatasetFolder`` (which also keep labels in ``samples``), dmlp-plugin's
own :class:`~dmlp_plugin.data.base.ImageDataset`, and ``torch.utils.data.Subset`` views
of any of these (labels go into the wrapped dataset, at the subset's indices).

Registered through the ``dmlp_plugin`` entry point ``torchvision`` in dmlp-plugin's
``pyproject.toml``, the way a third-party adapter package registers its own.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from dmlp_plugin import hookimpl
from dmlp_plugin.adapter import Adapter, IdentityMap, IndexMap, NpyLabelFile, StoredIndexMap, as_label_array
from dmlp_plugin.errors import AdapterError

__all__ = ["TorchvisionAdapter"]


class TorchvisionAdapter(NpyLabelFile, Adapter):
    """Purified labels for datasets with a ``targets`` attribute.

    Labels are written as an int64 ``.npy`` in dataset order. The index map is the
    identity, or the subset's indices when the dataset is a ``Subset`` (purified labels
    then cover the wrapped dataset, as purification runs on the full training set).

    Parameters
    ----------
    attribute
        Name of the label attribute, for datasets that call it something else
        (e.g. ``"labels"`` for torchvision's SVHN).
    """

    name = "torchvision"
    upstream = "https://github.com/pytorch/vision"
    # The release the test suite runs against; `targets` has kept its meaning since v0.8.
    upstream_commits = ("v0.29.2",)
    description = "datasets with a `targets` attribute: CIFAR10/100, MNIST, ImageFolder, dmlp ImageDataset"

    def __init__(self, *, attribute: str = "targets") -> None:
        self.attribute = attribute

    # -- index map ---------------------------------------------------------------------

    def index_map(self, dataset: Any = None) -> IndexMap:
        if dataset is None:
            return IdentityMap()
        _, indices = _unwrap_subsets(dataset)
        return IdentityMap() if indices is None else StoredIndexMap(indices)

    # -- files -------------------------------------------------------------------------

    # -- dataset objects ---------------------------------------------------------------

    def get_labels(self, dataset: Any) -> np.ndarray:
        root, indices = _unwrap_subsets(dataset)
        full = _to_numpy(self._targets(root))
        return as_label_array(full if indices is None else full[indices])

    def set_labels(self, dataset: Any, labels: np.ndarray) -> None:
        root, indices = _unwrap_subsets(dataset)
        old = self._targets(root)
        new = _to_numpy(old).astype(np.int64)
        if indices is None:
            new = np.asarray(labels, dtype=np.int64).copy()
        else:
            new[indices] = labels
        setattr(root, self.attribute, _like(old, new))
        # DatasetFolder/ImageFolder read labels from `samples` in __getitem__, not `targets`.
        samples = getattr(root, "samples", None)
        if isinstance(samples, list) and len(samples) == len(new) and all(
                isinstance(s, tuple) and len(s) == 2 for s in samples[:1]):
            same_imgs = getattr(root, "imgs", None) is samples
            root.samples = [(path, int(y)) for (path, _), y in zip(samples, new)]
            if same_imgs:
                root.imgs = root.samples

    def loader_labels(self, dataset: Any, positions: np.ndarray) -> np.ndarray:
        root, _ = _unwrap_subsets(dataset)
        # A target_transform (one-hot, say) changes what the loader yields but not which
        # label it holds; compare the label itself.
        with _without(root, "target_transform"):
            return super().loader_labels(dataset, positions)

    def _targets(self, root: Any) -> Any:
        try:
            return getattr(root, self.attribute)
        except AttributeError:
            raise AdapterError(
                f"adapter 'torchvision': {type(root).__name__} has no {self.attribute!r} attribute. It "
                "supports datasets that keep labels in `targets` (CIFAR10/100, MNIST, ImageFolder, "
                "dmlp ImageDataset); pass attribute=... if yours uses another name") from None

    # -- conformance -------------------------------------------------------------------

    @classmethod
    def conformance_dataset(cls, labels: np.ndarray) -> Any:
        from dmlp_plugin.data.base import ImageDataset

        class _Tiny(ImageDataset):
            name = "conformance"

            def __init__(self, targets: np.ndarray) -> None:
                super().__init__()
                self.targets = np.asarray(targets, dtype=np.int64).copy()
                self.classes = [str(c) for c in range(int(self.targets.max(initial=0)) + 1)]
                self.images = np.zeros((len(self.targets), 2, 2, 3), dtype=np.uint8)

        return _Tiny(labels)


def _unwrap_subsets(dataset: Any) -> tuple[Any, np.ndarray | None]:
    """The innermost dataset and the composed subset indices (``None`` if not a subset)."""
    indices = None
    # torch.utils.data.Subset, duck-typed so that importing this module never imports torch.
    while hasattr(dataset, "dataset") and hasattr(dataset, "indices"):
        idx = _to_numpy(dataset.indices).astype(np.int64)
        indices = idx if indices is None else idx[indices]
        dataset = dataset.dataset
    return dataset, indices


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch.Tensor
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _like(old: Any, new: np.ndarray) -> Any:
    """``new`` in the container type of ``old``: list of ints, array of its dtype, or tensor."""
    if isinstance(old, list):
        return [int(y) for y in new]
    if hasattr(old, "detach"):
        import torch

        return torch.as_tensor(new, dtype=old.dtype)
    if isinstance(old, np.ndarray):
        return new.astype(old.dtype)
    return [int(y) for y in new]


@contextlib.contextmanager
def _without(obj: Any, attribute: str) -> Iterator[None]:
    if getattr(obj, attribute, None) is None:
        yield
        return
    saved = getattr(obj, attribute)
    setattr(obj, attribute, None)
    try:
        yield
    finally:
        setattr(obj, attribute, saved)


@hookimpl
def dmlp_register_adapters(register: Any) -> None:
    register(TorchvisionAdapter)
