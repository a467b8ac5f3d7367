"""The pre-flight feature check inside purify_dataset and dmlp purify, and --export datalab."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

from dmlp_plugin import PurifyConfig, PurifyResult, purify_dataset
from dmlp_plugin.cli import main

FAST = PurifyConfig(mlp_candidate=False, rounds=2)


def _data(separation: float, n=1200, c=4, d=16, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, c, n)
    x = rng.normal(size=(c, d))[clean] * separation + rng.normal(size=(n, d))
    noisy = np.where(rng.random(n) < 0.3, rng.integers(0, c, n), clean)
    trusted = np.concatenate([np.flatnonzero(clean == k)[:30] for k in range(c)])
    return x.astype(np.float32), noisy, clean, trusted


def test_weak_features_warn_before_the_work_and_the_check_is_kept():
    x, noisy, clean, trusted = _data(separation=0.0)  # the features say nothing about the class
    with pytest.warns(RuntimeWarning, match="weak features"):
        result = purify_dataset(x, noisy, val_indices=trusted, val_labels=clean[trusted], config=FAST)
    check = result.metadata["feature_check"]
    assert check["weak"] and check["skill"] < check["threshold"] and check["num_rows"] == len(trusted)
    assert result.timings["feature_check"] > 0


def test_strong_features_pass_without_a_warning():
    x, noisy, clean, trusted = _data(separation=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = purify_dataset(x, noisy, val_indices=trusted, val_labels=clean[trusted], config=FAST)
    check = result.metadata["feature_check"]
    assert not check["weak"] and check["accuracy"] > 0.9
    assert PurifyResult.from_soft_labels(result.soft_labels, result.given_labels,
                                         metadata=result.metadata).metadata["feature_check"] == check


def test_the_check_can_be_turned_off():
    x, noisy, clean, trusted = _data(separation=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = purify_dataset(x, noisy, val_indices=trusted, val_labels=clean[trusted], config=FAST,
                                feature_check=False)
    assert "feature_check" not in result.metadata


def test_purify_cli_prints_the_check_and_exports_datalab_columns(tmp_path, capsys):
    x, noisy, clean, trusted = _data(separation=3.0)
    paths = {}
    for name, arr in {"f": x, "y": noisy, "vi": trusted, "vl": clean[trusted]}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    out = tmp_path / "purified.npz"
    code = main(["purify", "--features", str(paths["f"]), "--labels", str(paths["y"]), "--val-indices",
                 str(paths["vi"]), "--val-labels", str(paths["vl"]), "-o", str(out), "--no-progress",
                 "--set", "mlp_candidate=false", "--export", "datalab"])
    assert code == 0
    assert "feature check" in capsys.readouterr().out
    result = PurifyResult.load(out)
    with open(tmp_path / "purified.datalab.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(noisy)
    assert set(rows[0]) >= {"is_label_issue", "label_score", "given_label", "predicted_label"}
    assert [int(r["predicted_label"]) for r in rows] == result.labels.tolist()
    assert [int(r["given_label"]) for r in rows] == noisy.tolist()
