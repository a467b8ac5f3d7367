"""CIFAR-10/100 readers, on tiny folders written in the real python-pickle format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from shared_fixtures import needs_shared, real_cifar10_root, shared_dir  # noqa: F401

from dmlp_plugin.data import CIFAR10, CIFAR100, load_dataset
from dmlp_plugin.errors import CorruptFileError, InputError, MissingFileError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def planar_images(n: int, offset: int) -> np.ndarray:
    """``(n, 3072)`` uint8 rows as CIFAR stores them (R plane, G plane, B plane); image k
    has R = offset + k, G = 100 + k, B = 200 everywhere, so the HWC layout can be checked."""
    planes = np.empty((n, 3, 1024), np.uint8)
    planes[:, 0] = (offset + np.arange(n))[:, None]
    planes[:, 1] = (100 + np.arange(n))[:, None]
    planes[:, 2] = 200
    return planes.reshape(n, 3072)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 3) -> tuple[Path, np.ndarray, np.ndarray]:
    """A ``cifar-10-batches-py`` folder with 5 x ``per_batch`` train images; returns the
    folder and the train and test labels in order."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 10, 5 * per_batch)
    for b in range(5):
        s = slice(b * per_batch, (b + 1) * per_batch)
        _dump(folder / f"data_batch_{b + 1}", {"batch_label": f"training batch {b + 1} of 5",
                                               "labels": train[s].tolist(),
                                               "data": planar_images(per_batch, b * per_batch)})
    test = rng.integers(0, 10, n_test)
    _dump(folder / "test_batch", {"labels": test.tolist(), "data": planar_images(n_test, 50)})
    _dump(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": per_batch})
    return folder, train, test


@pytest.fixture
def cifar10_dir(tmp_path):
    return write_cifar10(tmp_path)


def test_cifar10_reads_batches_in_order_as_hwc(cifar10_dir):
    folder, train, _ = cifar10_dir
    ds = CIFAR10(folder.parent)
    assert len(ds) == 20 and ds.classes == CIFAR10_CLASSES
    assert ds.images.shape == (20, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.targets.dtype == np.int64
    np.testing.assert_array_equal(ds.targets, train)
    # image k of the concatenation: R = k (batch offsets add up), G = 100 + position in batch
    np.testing.assert_array_equal(ds.images[6, 5, 7], [6, 102, 200])
    image, label, index = ds[13]
    assert (label, index) == (train[13], 13)
    assert image.size == (32, 32) and image.getpixel((0, 0)) == (13, 101, 200)


def test_cifar10_accepts_the_folder_itself_and_test_split(cifar10_dir):
    folder, train, test = cifar10_dir
    np.testing.assert_array_equal(CIFAR10(folder).targets, train)
    ds = CIFAR10(folder, "test")
    np.testing.assert_array_equal(ds.targets, test)
    np.testing.assert_array_equal(ds.images[2, 0, 0], [52, 102, 200])
    assert load_dataset("cifar10", folder.parent, "test").fingerprint() == ds.fingerprint()


def test_cifar10_missing_folder_says_what_and_how(tmp_path):
    with pytest.raises(MissingFileError) as exc:
        CIFAR10(tmp_path)
    msg = str(exc.value)
    assert "cifar-10-batches-py" in msg and str(tmp_path) in msg
    assert "cs.toronto.edu/~kriz/cifar.html" in msg and "build_cifar10.py" in msg


def test_cifar10_missing_batch_names_it(cifar10_dir):
    folder, _, _ = cifar10_dir
    (folder / "data_batch_4").unlink()
    with pytest.raises(MissingFileError, match="data_batch_4"):
        CIFAR10(folder)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_pickle_is_corrupt_and_named(cifar10_dir, keep):
    folder, _, _ = cifar10_dir
    path = folder / "data_batch_3"
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * keep)])
    with pytest.raises(CorruptFileError, match="data_batch_3"):
        CIFAR10(folder)


def test_pickle_with_code_is_refused(cifar10_dir):
    folder, _, _ = cifar10_dir
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": os.system}, fh)
    with pytest.raises(CorruptFileError, match="batches.meta"):
        CIFAR10(folder)


def test_wrong_batch_content_is_corrupt(cifar10_dir):
    folder, _, _ = cifar10_dir
    _dump(folder / "data_batch_2", {"labels": [1, 2], "data": np.zeros((3, 3072), np.uint8)})
    with pytest.raises(CorruptFileError, match=r"data_batch_2.*3 images but 2 labels"):
        CIFAR10(folder)


def test_unknown_split(cifar10_dir):
    with pytest.raises(InputError, match="train, test"):
        CIFAR10(cifar10_dir[0], "val")


def test_fingerprint_is_stable_and_tracks_labels(cifar10_dir):
    folder, train, _ = cifar10_dir
    first = CIFAR10(folder).fingerprint()
    assert CIFAR10(folder).fingerprint() == first
    _dump(folder / "data_batch_1", {"labels": ((train[:4] + 1) % 10).tolist(), "data": planar_images(4, 0)})
    assert CIFAR10(folder).fingerprint() != first


def test_cifar100_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine = np.array([0, 1, 99, 54, 7])
    coarse = np.array([4, 1, 13, 2, 7])
    _dump(folder / "train", {"fine_labels": fine.tolist(), "coarse_labels": coarse.tolist(),
                             "data": planar_images(5, 0)})
    _dump(folder / "test", {"fine_labels": [3], "coarse_labels": [8], "data": planar_images(1, 9)})
    names = [f"fine{i}" for i in range(100)]
    _dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"c{i}" for i in range(20)]})
    ds = load_dataset("cifar100", tmp_path)
    assert isinstance(ds, CIFAR100) and ds.classes == names and len(ds.coarse_classes) == 20
    np.testing.assert_array_equal(ds.targets, fine)
    np.testing.assert_array_equal(ds.coarse_targets, coarse)
    assert ds[2][1:] == (99, 2)
    np.testing.assert_array_equal(CIFAR100(folder, "test").images[0, 3, 3], [9, 100, 200])
    with pytest.raises(MissingFileError, match="cifar-100-python"):
        CIFAR100(tmp_path / "elsewhere")


# -- the real CIFAR-10, rebuilt from ../shared --------------------------------------------

@pytest.mark.shared
@pytest.mark.slow
def test_real_cifar10_matches_the_original_label_order(real_cifar10_root):
    shared = shared_dir()
    if shared is None:
        pytest.skip(needs_shared("the CIFAR-10 labels in their original order"))
    ds = CIFAR10(real_cifar10_root)
    expected = np.load(shared / "data" / "cifar10" / "train_labels_original_order.npy")
    assert ds.images.shape == (50000, 32, 32, 3)
    np.testing.assert_array_equal(ds.targets, expected)
    assert np.bincount(ds.targets).tolist() == [5000] * 10
    test = CIFAR10(real_cifar10_root, "test")
    assert len(test) == 10000 and np.bincount(test.targets).tolist() == [1000] * 10
