"""No code from a user's folder runs: a pickle payload planted at every place the package reads one.

The payload is what the hostile test planted in ``test_batch``: an object whose
``__reduce__`` calls ``os.system``. Each reader must refuse the file with a
:class:`~dmlp_plugin.errors.CorruptFileError` naming it, and the command must never run
(its sentinel file must not appear).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dmlp_plugin.cli import main
from dmlp_plugin.data import CIFAR10, CIFAR100
from dmlp_plugin.errors import CorruptFileError
from dmlp_plugin.features.checkpoints import read_state_dict
from dmlp_plugin.io import load_array
from dmlp_plugin.noise import load_cifar_n
from dmlp_plugin.reproduce.cifar_inputs import FEATURES, TRAIN_LABELS, load_inputs, load_test_labels
from dmlp_plugin.result import PurifyResult


class Payload:
    """Runs ``touch SENTINEL`` when unpickled by a plain unpickler."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


@pytest.fixture
def sentinel(tmp_path) -> Path:
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the planted payload ran"


def cifar_batch(n: int = 4) -> dict:
    return {"data": np.zeros((n, 3072), np.uint8), "labels": list(range(n))}


def cifar10_folder(root: Path, plant: str, sentinel: Path) -> Path:
    """A CIFAR-10 folder whose ``plant`` file carries the payload (the others are valid)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    files = {f"data_batch_{i}": cifar_batch() for i in range(1, 6)}
    files["test_batch"] = cifar_batch()
    files["batches.meta"] = {"label_names": [str(c) for c in range(10)]}
    for name, content in files.items():
        if name == plant:
            content = dict(content, evil=Payload(sentinel))
        (folder / name).write_bytes(pickle.dumps(content, protocol=2))
    return folder


@pytest.mark.parametrize("plant,split", [("data_batch_3", "train"), ("test_batch", "test"), ("batches.meta", "train")])
def test_cifar10_batches_and_meta(tmp_path, sentinel, plant, split):
    cifar10_folder(tmp_path, plant, sentinel)
    with pytest.raises(CorruptFileError, match=f"{plant}: refusing to load posix.system"):
        CIFAR10(tmp_path, split)


@pytest.mark.parametrize("plant", ["train", "meta"])
def test_cifar100_batches_and_meta(tmp_path, sentinel, plant):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train = {"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 1], "coarse_labels": [0, 0]}
    meta = {"fine_label_names": [str(c) for c in range(100)]}
    for name, content in (("train", train), ("meta", meta)):
        (folder / name).write_bytes(pickle.dumps(dict(content, evil=Payload(sentinel)) if name == plant else content))
    with pytest.raises(CorruptFileError, match="refusing to load posix.system"):
        CIFAR100(tmp_path, "train")


def test_reproduce_reads_the_test_batch_without_running_it(tmp_path, sentinel):
    """`dmlp reproduce table1 --smoke --cifar-root` ran this payload before (reproduce/cifar_inputs.py)."""
    cifar10_folder(tmp_path / "cifar", "test_batch", sentinel)
    with pytest.raises(CorruptFileError, match="test_batch: refusing to load posix.system"):
        load_test_labels(tmp_path / "cifar")
    shared = tmp_path / "shared"
    (shared / FEATURES).parent.mkdir(parents=True)
    (shared / TRAIN_LABELS).parent.mkdir(parents=True)
    np.savez(shared / FEATURES, train=np.zeros((4, 2), np.float16), test=np.zeros((4, 2), np.float16))
    np.save(shared / TRAIN_LABELS, np.arange(4))
    with pytest.raises(CorruptFileError, match="refusing to load posix.system"):
        load_inputs(shared, tmp_path / "cifar")


def test_the_valid_folder_still_loads(tmp_path, sentinel):
    cifar10_folder(tmp_path, "none", sentinel)
    assert len(CIFAR10(tmp_path, "train")) == 20
    np.testing.assert_array_equal(load_test_labels(tmp_path), np.arange(4))


def test_cifar_n_label_files(tmp_path, sentinel):
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": np.arange(10) % 10, "worse_label": Payload(sentinel)}, path)
    with pytest.raises(CorruptFileError, match="cannot read CIFAR-N label file"):
        load_cifar_n(path, key="worse_label")
    assert main(["noise", "--cifar-n", str(path), "--key", "worse_label", "-o", str(tmp_path / "out.npy")]) == 2


@pytest.mark.parametrize("legacy", [False, True])
def test_checkpoints(tmp_path, sentinel, legacy, capsys):
    path = tmp_path / "simclr.pth"
    # torch.save's zip format, and the pickle format of torch < 1.6
    torch.save({"state_dict": {"w": torch.zeros(2)}, "args": Payload(sentinel)}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CorruptFileError, match="holds objects other than tensors") as refused:
        read_state_dict(path)
    # the flag the message names exists, on the command that reads checkpoints
    assert "`dmlp features --checkpoint FILE --trust-checkpoint ...`" in str(refused.value)
    with pytest.raises(SystemExit):
        main(["features", "--help"])
    assert "--trust-checkpoint" in capsys.readouterr().out


def test_array_files_given_as_inputs(tmp_path, sentinel):
    pt = tmp_path / "labels.pt"
    torch.save({"labels": Payload(sentinel)}, pt)
    with pytest.raises(CorruptFileError):
        load_array(pt, key="labels", what="labels")
    npy = tmp_path / "labels.npy"
    np.save(npy, np.array([Payload(sentinel)], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptFileError, match="holds Python objects"):
        load_array(npy, what="labels")
    npz = tmp_path / "labels.npz"
    np.savez(npz, labels=np.array([Payload(sentinel)], dtype=object))
    with pytest.raises(CorruptFileError, match="holds Python objects"):
        load_array(npz, what="labels")
    with pytest.raises(CorruptFileError, match="holds Python objects"):
        PurifyResult.load(npz)
