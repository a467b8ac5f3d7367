"""Purification's progress: paper mode reports each epoch with its figure; the default
reports each candidate family as a stage of its own, candidate by candidate."""

from __future__ import annotations

import numpy as np
import pytest

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.progress import Reporter


class RecordingReporter(Reporter):
    """Stands in for the terminal's bars and the log's lines; keeps every call."""

    enabled = True

    def __init__(self):
        self.calls: list[tuple] = []
        self.closed = False

    def __call__(self, stage, done, total=None, *, unit="", detail=""):
        self.calls.append((stage, done, total, unit, detail))

    def close(self):
        self.closed = True

    def stage(self, name: str) -> list[tuple]:
        return [call[1:] for call in self.calls if call[0] == name]


@pytest.fixture
def reporter(monkeypatch):
    recording = RecordingReporter()
    monkeypatch.setattr("dmlp_plugin.progress.stage_progress",
                        lambda enabled, **kw: recording if enabled else Reporter())
    return recording


def _data():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 3, 600)
    features = (3 * np.eye(3, 8)[clean] + rng.normal(size=(600, 8))).astype(np.float32)
    noisy = np.where(rng.random(600) < 0.5, rng.integers(0, 3, 600), clean)
    return features, noisy, clean


def _purify(config, *, with_clean: bool = True, progress: bool = True):
    features, noisy, clean = _data()
    return purify_dataset(features, noisy, val_indices=np.arange(60), val_labels=clean[:60],
                          clean_labels=clean if with_clean else None, config=config, progress=progress,
                          feature_check=False)


@pytest.mark.parametrize("with_clean", [True, False])
def test_each_paper_epoch_shows_its_figure(reporter, with_clean):
    result = _purify(PurifyConfig.paper(epochs=6, eac_period=3, batch_size=200), with_clean=with_clean)
    epochs = reporter.stage("purifying (the paper's loop)")
    assert [(done, total, unit) for done, total, unit, _ in epochs] == [(k, 6, "epochs") for k in range(1, 7)]
    details = [detail for *_, detail in epochs]
    assert details[-1].split()[0] == ("label" if with_clean else "changed")
    figures = [float(d.rsplit(" ", 1)[1].rstrip("%")) / 100 for d in details]
    key = "label_accuracy" if with_clean else "changed"
    assert figures == pytest.approx([r[key] for r in result.history], abs=5e-5)
    assert reporter.closed


def test_each_candidate_family_of_the_default_is_a_stage(reporter):
    # the given-labels candidate is off by default; asked for, it is a stage of its own
    result = _purify(PurifyConfig(rounds=3, given_candidate=True))
    families = list(dict.fromkeys(call[0] for call in reporter.calls))
    assert families == ["least-squares rounds", "given labels", "logistic candidate"]
    assert reporter.stage("least-squares rounds") == [(k, 3, "candidates", "") for k in (1, 2, 3)]
    assert reporter.stage("given labels") == [(1, 1, "candidates", "")]
    decays = len(PurifyConfig().logistic_weight_decays)
    assert reporter.stage("logistic candidate") == [(k, decays, "candidates", "") for k in range(1, decays + 1)]
    # each family's stage counts the candidates that result records for it
    recorded = [c["family"] for c in result.metadata["candidates"]]
    assert {family: recorded.count(family) for family in families} == {
        family: reporter.stage(family)[-1][1] for family in families}
    assert reporter.closed


def test_without_progress_nothing_is_reported(reporter):
    _purify(PurifyConfig(rounds=2), progress=False)
    _purify(PurifyConfig.paper(epochs=2, batch_size=200), progress=False)
    assert reporter.calls == []
