"""CIFAR-10N/100N label files: torch.save'd dicts of numpy arrays."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dmlp_plugin.errors import CorruptFileError, InputError, LabelError, MissingFileError, ShapeError
from dmlp_plugin.noise import load_cifar_n

N = 1000


def cifar10n_table(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 10, n)
    table = {"clean_label": clean, "aggre_label": clean.copy()}
    worse = clean.copy()
    worse[:400] = (clean[:400] + 1) % 10  # exactly 40% wrong, all to the next class
    table["worse_label"] = worse
    table["aggre_label"][::10] = (clean[::10] + 3) % 10  # exactly 10% wrong
    for k in (1, 2, 3):
        table[f"random_label{k}"] = clean.copy()
    return table


def write_pt(path: Path, table: dict, *, numpy1: bool = False) -> Path:
    torch.save(table, path)
    if numpy1:
        # Files written under numpy 1.x name numpy.core; rewrite the pickle to match.
        with zipfile.ZipFile(path) as src:
            entries = [(info, src.read(info)) for info in src.infolist()]
        with zipfile.ZipFile(path, "w") as dst:
            for info, data in entries:
                if info.filename.endswith("data.pkl"):
                    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                dst.writestr(info, data)
    return path


@pytest.mark.parametrize("numpy1", [False, True])
def test_load_worse_label_with_realised_transition(tmp_path, numpy1):
    table = cifar10n_table()
    res = load_cifar_n(write_pt(tmp_path / "CIFAR-10_human.pt", table, numpy1=numpy1), key="worse_label",
                       num_samples=N, clean_labels=table["clean_label"])
    np.testing.assert_array_equal(res.noisy_labels, table["worse_label"])
    np.testing.assert_array_equal(res.clean_labels, table["clean_label"])
    assert res.realised_rate == pytest.approx(0.4)
    assert res.nominal_rate == pytest.approx(0.4021)  # published with CIFAR-10N
    assert res.kind == "cifar-n:worse_label" and res.num_classes == 10
    clean = table["clean_label"]
    for c in range(10):
        flipped = ((clean[:400] == c).sum()) / (clean == c).sum()
        assert res.transition[c, (c + 1) % 10] == pytest.approx(flipped)


def test_aggre_label_and_cifar100n(tmp_path):
    path = write_pt(tmp_path / "c10n.pt", cifar10n_table())
    assert load_cifar_n(path, key="aggre_label").realised_rate == pytest.approx(0.1)
    clean = np.arange(N) % 100
    noisy = np.where(np.arange(N) % 5 == 0, (clean + 1) % 100, clean)
    res = load_cifar_n(write_pt(tmp_path / "c100n.pt", {"clean_label": clean, "noisy_label": noisy,
                                                       "clean_coarse_label": clean % 20,
                                                       "noisy_coarse_label": clean % 20}), key="noisy_label")
    assert res.num_classes == 100 and res.realised_rate == pytest.approx(0.2)


def test_length_mismatch_names_both_lengths(tmp_path):
    path = write_pt(tmp_path / "c10n.pt", cifar10n_table())
    with pytest.raises(ShapeError, match=rf"{N} labels but the dataset has 50000"):
        load_cifar_n(path, num_samples=50000)
    with pytest.raises(ShapeError, match=rf"{N} labels but the dataset has 10"):
        load_cifar_n(path, clean_labels=np.zeros(10, np.int64))


def test_clean_labels_in_another_order_are_caught(tmp_path):
    table = cifar10n_table()
    path = write_pt(tmp_path / "c10n.pt", table)
    with pytest.raises(LabelError, match="original order"):
        load_cifar_n(path, clean_labels=table["clean_label"][::-1])


def test_unknown_key_lists_the_label_sets(tmp_path):
    path = write_pt(tmp_path / "c10n.pt", cifar10n_table())
    with pytest.raises(InputError, match="aggre_label, random_label1, random_label2, random_label3, worse_label"):
        load_cifar_n(path, key="noisy_label")


def test_bad_files(tmp_path):
    with pytest.raises(MissingFileError):
        load_cifar_n(tmp_path / "absent.pt")
    path = write_pt(tmp_path / "c10n.pt", cifar10n_table())
    blob = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptFileError, match="cut.pt"):
        load_cifar_n(tmp_path / "cut.pt")
    with pytest.raises(CorruptFileError, match="clean_label"):
        load_cifar_n(write_pt(tmp_path / "other.pt", {"labels": np.arange(3)}))
    # A pickle that would call a function on load is refused, not run.
    torch.save({"clean_label": np.arange(3), "worse_label": os.getcwd}, tmp_path / "code.pt")
    with pytest.raises(CorruptFileError, match="code.pt"):
        load_cifar_n(tmp_path / "code.pt")
