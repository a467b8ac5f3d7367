"""The purification progress bar: a figure per epoch and a named final stage."""

from __future__ import annotations

import numpy as np
import pytest

from dmlp_plugin import PurifyConfig, purify_dataset


class RecordingBar:
    """Stands in for rich's Progress and keeps every update."""

    def __init__(self):
        self.updates, self.total, self.stopped = [], None, False
        self.completed = 0

    def add_task(self, description, total, status=""):
        self.total = total
        return 0

    def start(self):
        pass

    def stop(self):
        self.stopped = True

    def update(self, task, advance=0, completed=None, status=None):
        self.completed = completed if completed is not None else self.completed + advance
        self.updates.append((self.completed, status))


@pytest.fixture
def bar(monkeypatch):
    recording = RecordingBar()
    monkeypatch.setattr("dmlp_plugin.progress.make_progress", lambda **kw: recording)
    return recording


def _data():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 3, 600)
    features = (3 * np.eye(3, 8)[clean] + rng.normal(size=(600, 8))).astype(np.float32)
    noisy = np.where(rng.random(600) < 0.5, rng.integers(0, 3, 600), clean)
    return features, noisy, clean


@pytest.mark.parametrize("with_clean", [True, False])
def test_each_epoch_shows_its_figure_and_the_last_stage_is_named(bar, with_clean):
    features, noisy, clean = _data()
    result = purify_dataset(features, noisy, val_indices=np.arange(60), val_labels=clean[:60],
                            clean_labels=clean if with_clean else None,
                            config=PurifyConfig(epochs=6, eac_period=3), progress=True)
    assert bar.total == 7 and bar.stopped  # six epochs and the final stage
    epochs = [status for _, status in bar.updates if status and status.startswith("epoch")]
    assert len(epochs) == 6 and epochs[0].startswith("epoch 1/6")
    figures = [float(s.rsplit(" ", 1)[1].rstrip("%")) / 100 for s in epochs]
    key = "label_accuracy" if with_clean else "changed"
    assert epochs[-1].split()[2] == ("label" if with_clean else "changed")
    assert figures == pytest.approx([r[key] for r in result.history], abs=5e-5)
    stage = [(done, status) for done, status in bar.updates if status and status.startswith("choosing")]
    assert stage and stage[0][0] == 6 and "logistic and network candidates" in stage[0][1]  # still at 6 of 7
    assert bar.updates[-1] == (7, "done")
