"""``dmlp data``: CIFAR-10 laid out as each upstream reads it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from test_data_cifar import write_cifar10

from dmlp_plugin.cli import main
from dmlp_plugin.data import CIFAR10
from dmlp_plugin.data.layouts import write_cifar10_layout
from dmlp_plugin.errors import InputError, MissingFileError


@pytest.fixture
def source(tmp_path):
    folder, train, test = write_cifar10(tmp_path / "src")
    return folder.parent, train, test


def test_pickles_layout_is_the_flat_folder_dividemix_reads(source, tmp_path):
    root, train, _ = source
    written = write_cifar10_layout(root, "pickles", tmp_path / "dm")
    assert sorted(p.name for p in written) == sorted([f"data_batch_{i}" for i in range(1, 6)] +
                                                     ["test_batch", "batches.meta"])
    # DivideMix concatenates data_batch_1..5 and reads 'labels'
    labels = sum((pickle.load(open(tmp_path / "dm" / f"data_batch_{i}", "rb"), encoding="latin1")["labels"]
                  for i in range(1, 6)), [])
    np.testing.assert_array_equal(labels, train)


def test_torchvision_layout_reads_back_identically(source, tmp_path):
    root, train, test = source
    write_cifar10_layout(root, "torchvision", tmp_path / "tv")
    assert (tmp_path / "tv" / "cifar-10-batches-py" / "batches.meta").is_file()
    copy, original = CIFAR10(tmp_path / "tv"), CIFAR10(root)
    np.testing.assert_array_equal(copy.images, original.images)
    np.testing.assert_array_equal(copy.targets, train)


def test_cdr_layout_is_planar_rows_and_int_labels(source, tmp_path):
    root, train, test = source
    write_cifar10_layout(root, "cdr-npy", tmp_path / "cdr")
    folder = tmp_path / "cdr" / "data" / "cifar10"
    images, labels = np.load(folder / "train_images.npy"), np.load(folder / "train_labels.npy")
    assert images.shape == (20, 3072) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, train)
    np.testing.assert_array_equal(np.load(folder / "test_labels.npy"), test)
    # CDR reshapes rows to (3, 32, 32) then transposes to HWC: that must give our images back
    hwc = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(hwc, CIFAR10(root).images)


def test_cli_names_upstreams_and_bad_sources(source, tmp_path, capsys):
    root, train, _ = source
    assert main(["data", "cifar10", str(tmp_path / "c"), "--format", "cdr", "--root", str(root)]) == 0
    assert "wrote 4 file(s) for cdr" in capsys.readouterr().out
    assert main(["data", "cifar10", str(tmp_path / "x"), "--format", "coteaching", "--root", str(tmp_path)]) == 2
    assert "cifar-10-batches-py" in capsys.readouterr().err
    with pytest.raises(MissingFileError):
        write_cifar10_layout(tmp_path / "nowhere", "pickles", tmp_path / "y")
    with pytest.raises(InputError, match="unknown layout 'zip'"):
        write_cifar10_layout(root, "zip", tmp_path / "z")
