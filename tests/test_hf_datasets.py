"""Purifying a Hugging Face ``datasets`` dataset saved on disk, on a tiny one built here."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dmlp_plugin import PurifyConfig
from dmlp_plugin.errors import InputError, MissingExtraError

datasets = pytest.importorskip("datasets", reason="needs the hf extra: pip install 'dmlp-plugin[hf]'")
from dmlp_plugin.hf_datasets import purify_hf_dataset  # noqa: E402

NAMES = ["cat", "dog", "ship"]
FAST = PurifyConfig(mlp_candidate=False, logistic_candidate=False)  # the I/O is tested here, not the heads


@pytest.fixture
def saved(tmp_path):
    """A DatasetDict (train: 300 rows of separable features, 30% of the labels flipped, 60
    verified; test: 10 rows) saved with save_to_disk; returns its folder and the truth."""
    rng = np.random.default_rng(0)
    clean = np.repeat(np.arange(3), 100)
    feats = (np.eye(3, 8)[clean] * 4 + rng.standard_normal((300, 8))).astype(np.float32)
    noisy = np.where(rng.random(300) < 0.3, (clean + rng.integers(1, 3, 300)) % 3, clean)
    verified = np.full(300, -1)
    trusted = np.concatenate([rng.choice(np.flatnonzero(clean == c), 20, replace=False) for c in range(3)])
    verified[trusted] = clean[trusted]
    label = datasets.ClassLabel(names=NAMES)
    train = datasets.Dataset.from_dict(
        {"embedding": feats.tolist(), "label": noisy.tolist(), "verified": verified.tolist()},
        features=datasets.Features({"embedding": datasets.Sequence(datasets.Value("float32")), "label": label,
                                    "verified": datasets.Value("int64")}))
    test = datasets.Dataset.from_dict({"embedding": feats[:10].tolist(), "label": clean[:10].tolist(),
                                       "verified": [-1] * 10}, features=train.features)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "ds"))
    return tmp_path / "ds", clean, noisy, trusted


def test_purified_column_round_trips_through_save_to_disk(saved, tmp_path):
    source, clean, noisy, trusted = saved
    result = purify_hf_dataset(source, tmp_path / "out", feature_column="embedding", trusted_column="verified",
                               config=FAST, seed=0, device="cpu")
    back = datasets.load_from_disk(str(tmp_path / "out"))
    train = back["train"]
    assert train.features["dmlp_label"] == train.features["label"]  # a ClassLabel with the names
    assert train.features["dmlp_label"].names == NAMES and result.class_names == NAMES
    np.testing.assert_array_equal(train["dmlp_label"], result.labels)
    np.testing.assert_array_equal(train["label"], noisy)  # the given labels are kept
    np.testing.assert_array_equal(np.sort(result.trusted_indices), np.sort(trusted))
    rest = np.setdiff1d(np.arange(300), trusted)
    assert (result.labels[rest] == clean[rest]).mean() > (noisy[rest] == clean[rest]).mean() + 0.15
    assert back["test"].column_names == ["embedding", "label", "verified"]  # other splits unchanged
    assert "dmlp_label" not in datasets.load_from_disk(str(source))["train"].column_names


def test_val_indices_work_as_for_purify_dataset(saved, tmp_path):
    source, clean, _, trusted = saved
    result = purify_hf_dataset(source, tmp_path / "out", feature_column="embedding", split="train",
                               output_column="clean_guess", val_indices=trusted, val_labels=clean[trusted],
                               config=FAST, device="cpu")
    np.testing.assert_array_equal(datasets.load_from_disk(str(tmp_path / "out"))["train"]["clean_guess"],
                                  result.labels)


@pytest.mark.parametrize("kwargs, message", [
    (dict(feature_column="emb"), "no column 'emb'; it has embedding, label, verified"),
    (dict(feature_column="embedding", output_column="label"), "already has a column 'label'"),
    (dict(feature_column="embedding", split="valid"), "holds the splits train, test; name one with split="),
])
def test_bad_requests_are_one_line(saved, tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        purify_hf_dataset(saved[0], tmp_path / "out", trusted_column="verified", **kwargs)
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_overwritten(saved, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists; give a new folder"):
        purify_hf_dataset(saved[0], tmp_path / "out", feature_column="embedding", trusted_column="verified")
    with pytest.raises(InputError, match="is the source"):
        purify_hf_dataset(saved[0], saved[0], feature_column="embedding", trusted_column="verified")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_missing_extra_names_the_install(saved, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'dmlp-plugin\[hf\]'"):
        purify_hf_dataset(saved[0], tmp_path / "out", feature_column="embedding", trusted_column="verified")
