"""The built-in ``torchvision`` adapter on real torchvision dataset classes, built from tiny files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from plugin_fixtures import clean_env, fresh_plugins, pm  # noqa: F401
from torch.utils.data import Subset

from dmlp_plugin import get_adapter
from dmlp_plugin.errors import AdapterError, AlignmentError
from dmlp_plugin.result import PurifyResult


def _result(given, purified, num_classes):
    return PurifyResult.from_soft_labels(np.eye(num_classes, dtype=np.float32)[purified], np.asarray(given))


@pytest.fixture
def adapter(pm):
    return get_adapter("torchvision")()


@pytest.fixture
def cifar10(tmp_path, monkeypatch):
    """A real torchvision CIFAR10 object over 5 tiny batches in the python-pickle layout."""
    import torchvision.datasets.cifar as cifar

    folder = tmp_path / cifar.CIFAR10.base_folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, _ in cifar.CIFAR10.train_list:
        batch = {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, 4).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    # Our files cannot match the release's md5 sums.
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    return cifar.CIFAR10(str(tmp_path), train=True, download=False)


def test_cifar10_inject_and_export(adapter, cifar10, tmp_path):
    given = np.array(cifar10.targets)
    purified = (given + 3) % 10
    adapter.inject(cifar10, _result(given, purified, 10), num_checks=None)
    assert isinstance(cifar10.targets, list) and cifar10.targets == purified.tolist()
    assert [cifar10[i][1] for i in range(len(cifar10))] == purified.tolist()
    path = adapter.export(_result(given, purified, 10), tmp_path / "labels.npy")
    on_disk = np.load(path)
    assert on_disk.dtype == np.int64 and np.array_equal(on_disk, purified)
    assert np.array_equal(adapter.read_labels(path), purified)


def test_image_folder_updates_samples_too(adapter, tmp_path):
    from torchvision.datasets import ImageFolder

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for k in range(3):
            Image.new("RGB", (2, 2), (k, 0, 0)).save(tmp_path / cls / f"{k}.png")
    dataset = ImageFolder(str(tmp_path))
    given = np.array(dataset.targets)
    purified = 1 - given
    adapter.inject(dataset, _result(given, purified, 2))
    assert [dataset[i][1] for i in range(len(dataset))] == purified.tolist()  # __getitem__ reads samples
    assert [y for _, y in dataset.imgs] == purified.tolist()


def test_tensor_targets_keep_their_type_and_target_transform_is_restored(adapter):
    class MnistLike:
        def __init__(self):
            self.targets = torch.tensor([0, 1, 2, 3], dtype=torch.int64)
            self.target_transform = lambda y: torch.nn.functional.one_hot(torch.tensor(y), 4)

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            y = int(self.targets[i])
            return None, self.target_transform(y) if self.target_transform else y

    dataset = MnistLike()
    transform = dataset.target_transform
    adapter.inject(dataset, np.array([3, 2, 1, 0]))
    assert isinstance(dataset.targets, torch.Tensor) and dataset.targets.tolist() == [3, 2, 1, 0]
    assert dataset.target_transform is transform


def test_subset_labels_go_into_the_wrapped_dataset(adapter):
    from dmlp_plugin.adapter import StoredIndexMap

    root = _Targets(np.zeros(10, int))
    outer = Subset(Subset(root, [9, 7, 5, 3, 1]), [4, 0, 2])  # dataset indices 1, 9, 5
    mapping = adapter.index_map(outer)
    assert isinstance(mapping, StoredIndexMap) and mapping.indices(10).tolist() == [1, 9, 5]
    purified = np.arange(10)
    adapter.inject(outer, _result(np.zeros(10, int), purified, 10))
    assert root.targets.tolist() == [0, 1, 0, 0, 0, 5, 0, 0, 0, 9]  # only the subset's samples change
    assert [outer[i][1] for i in range(3)] == [1, 9, 5]
    with pytest.raises(AlignmentError, match="outside the 5 purified samples"):
        adapter.inject(outer, np.zeros(5, int))


def test_missing_attribute_is_named_and_attribute_option(pm):
    class Svhn:
        def __init__(self):
            self.labels = np.array([1, 2], dtype=np.int64)

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return None, int(self.labels[i])

    with pytest.raises(AdapterError, match="Svhn has no 'targets' attribute.*attribute="):
        get_adapter("torchvision")().inject(Svhn(), np.array([0, 0]))
    dataset = Svhn()
    get_adapter("torchvision")(attribute="labels").inject(dataset, np.array([0, 3]))
    assert dataset.labels.dtype == np.int64 and dataset.labels.tolist() == [0, 3]


class _Targets:
    def __init__(self, labels):
        self.targets = np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return None, int(self.targets[i]), i
