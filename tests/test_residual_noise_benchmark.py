"""Tests of benchmarks/residual_noise.py: its estimators on hand-made results, and a smoke run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from engine_fixtures import one_torch_thread  # noqa: F401  (autouse)

from dmlp_plugin.reproduce.cifar_inputs import TRAIN_LABELS


BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import residual_noise as rn  # noqa: E402
from shared_fixtures import needs_shared


def blobs(n: int, d: int = 32, c: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    return (rng.normal(size=(c, d))[y] * 1.5 + rng.normal(size=(n, d))).astype(np.float32), y.astype(np.int64)


def test_run_setting_tables_and_section_are_well_formed(tmp_path):
    features, clean = blobs(1500)
    runs = rn.run_setting(features, clean, "Symmetric 50%", "symmetric", 0.5, configs=["default", "paper"],
                          seed=0, num_trusted=200, epochs=4, log=lambda _: None)
    assert [r.config for r in runs] == ["default", "paper"]
    for run in runs:
        assert 0.3 < run.given_noise < 0.6 and 0.0 <= run.truth <= 1.0
        assert set(run.estimates) == set(rn.ESTIMATORS)
        assert run.error("confidence") == pytest.approx(run.estimates["confidence"] - run.truth)
    assert runs[0].estimates["entropy"] is not None  # the default records its candidate log-loss
    assert runs[1].estimates["entropy"] is None and runs[1].error("entropy") is None
    for head, body in (rn.runs_table(runs), rn.summary_table(runs)):
        assert body and all(len(row) == len(head) for row in body)
    assert set(rn.best_by_config(runs)) == {"default", "paper"}
    args = rn.parse_args(["--rates", "0.5", "--asym-rates", "", "--epochs", "4"])
    rep = rn.Report(args, "2026-01-01 00:00", "0 / 0 / 0", runs, len(clean), "0 / 0 / 0", 1.0)
    text = rn.render(rep)
    assert text.startswith(rn.START) and text.endswith(rn.END) and "--epochs 4" in text
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n<!-- purify:start -->\npurify\n<!-- purify:end -->\n")
    rn.SECTION.write(text, path)
    rn.SECTION.write(text, path)
    written = path.read_text()
    assert "purify\n<!-- purify:end -->" in written and written.count(rn.START) == 1


def test_parse_args_rejects_unknown_configs():
    assert rn.parse_args([]).threads == 1 and rn.parse_args(["--seeds", "0,1"]).seed_list == [0, 1]
    with pytest.raises(SystemExit):
        rn.parse_args(["--configs", "default,fancy"])


def test_missing_shared_folder_exits_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="missing shared input"):
        rn.load_train(tmp_path)


@pytest.mark.shared
def test_real_subset_of_the_shared_features():
    shared = rn.shared_dir()
    if not (shared / rn.FEATURES).is_file() or not (shared / TRAIN_LABELS).is_file():
        pytest.skip(needs_shared("the CIFAR-10 k-means features and labels"))
    features, clean = rn.load_train(shared)
    rows = np.random.default_rng(0).permutation(len(clean))[:2000]
    runs = rn.run_setting(features[rows], clean[rows], "Asymmetric 40%", "asymmetric", 0.4, configs=["default"],
                          seed=0, num_trusted=200, epochs=4, log=lambda _: None)
    assert 0.1 < runs[0].given_noise < 0.3 and all(v is not None for v in runs[0].estimates.values())
