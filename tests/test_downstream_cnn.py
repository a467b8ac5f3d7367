"""benchmarks/downstream_cnn.py on a tiny synthetic image set (no ../shared needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import downstream_cnn as dc  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def colour_images(n: int, num_classes: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(n, 3, size, size)`` images whose class is planted as a mean colour, with pixel noise.

    Flips and shifts keep the colour, so the augmented CNN can learn it in a couple of epochs.
    """
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(99).uniform(40, 215, size=(num_classes, 3))
    y = rng.integers(0, num_classes, n)
    x = palette[y][:, :, None, None] + rng.normal(0, 30, size=(n, 3, size, size))
    return np.clip(x, 0, 255).astype(np.uint8), y


def test_augment_flips_and_shifts_each_image_by_itself():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    out = dc.augment(x, gen, shift=0)
    for i in range(2):  # without shift: each image is itself or its mirror
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(2))
    out = dc.augment(x, torch.Generator().manual_seed(1), shift=2)
    assert out.shape == x.shape
    for i in range(2):
        # Every non-zero pixel is one of the image's own values, in its row order or mirrored.
        values = out[i][out[i] != 0]
        assert set(values.tolist()) <= set(x[i].flatten().tolist())
    gens = [torch.Generator().manual_seed(s) for s in range(20)]
    outs = [dc.augment(x, g, shift=2) for g in gens]
    assert any(not torch.equal(o[0], x[0]) for o in outs)  # something moved


def test_smoke_learns_a_planted_signal_and_resumes(tmp_path, monkeypatch):
    k = 4
    train_x, clean = colour_images(480, k, seed=0)
    test_x, test_y = colour_images(200, k, seed=1)
    # Features the purifier can read the class from (the mean colour plus noise).
    feats = train_x.reshape(len(train_x), 3, -1).mean(2).astype(np.float32)
    feats = np.concatenate([feats, np.random.default_rng(2).normal(size=(len(feats), 5)).astype(np.float32)], 1)
    rng = np.random.default_rng(3)
    noisy = clean.copy()
    flip = rng.random(len(clean)) < 0.5
    noisy[flip] = rng.integers(0, k, flip.sum())
    trusted = np.sort(rng.permutation(len(clean))[:60])
    runs, seconds = dc.make_runs(clean, feats, [("sym-0.5", noisy)], trusted, log=lambda _: None)
    assert [(r.setting, r.labels_kind) for r in runs] == [("clean", "clean"), ("sym-0.5", "given"),
                                                          ("sym-0.5", "purified")]
    given, purified = runs[1], runs[2]
    assert purified.label_acc > given.label_acc + 0.1  # the purifier reads the planted colour
    np.testing.assert_array_equal(given.labels[trusted], clean[trusted])

    cfg = dc.TrainConfig(epochs=3, batch_size=32, lr=0.05)
    results = dc.run_all(runs[:1], train_x, test_x, test_y, cfg, tmp_path, log=lambda _: None)
    clean_run = results[("clean", "clean")]
    assert clean_run["cached"] is False
    assert clean_run["test_acc"] > 0.6, clean_run  # chance is 0.25
    assert len(clean_run["epoch_seconds"]) == 3

    # Rerun: the finished run comes from the cache, the new ones are trained.
    trained = []
    real_train = dc.train_cnn

    def counting(train_x, labels, *a, **kw):
        trained.append(np.asarray(labels).copy())
        return real_train(train_x, labels, *a, **kw)

    monkeypatch.setattr(dc, "train_cnn", counting)
    results = dc.run_all(runs, train_x, test_x, test_y, cfg, tmp_path, log=lambda _: None)
    assert results[("clean", "clean")]["cached"] is True
    assert results[("clean", "clean")]["test_acc"] == clean_run["test_acc"]
    assert len(trained) == 2  # given and purified, not clean
    # Changed labels (e.g. a new default) miss the cache; finished runs are skipped again.
    changed = dc.Run("sym-0.5", "purified", np.roll(purified.labels, 1), purified.label_acc)
    monkeypatch.setattr(dc, "train_cnn", lambda *a, **kw: pytest.fail("nothing should train"))
    again = dc.run_all(runs, train_x, test_x, test_y, cfg, tmp_path, log=lambda _: None)
    assert all(r["cached"] for r in again.values())
    missing = dc.run_all([changed], train_x, test_x, test_y, cfg, tmp_path, train_missing=False,
                         log=lambda _: None)
    assert missing == {}
    # ... but the report can show the run on the earlier labels, marked as such.
    earlier = dc.earlier_results(tmp_path, [changed], missing, len(test_y), cfg)
    assert earlier[("sym-0.5", "purified")]["test_acc"] == again[("sym-0.5", "purified")]["test_acc"]
    assert dc.earlier_results(tmp_path, [changed], missing, len(test_y) + 1, cfg) == {}

    # The report marks what has not run.
    class Args:
        command = "python benchmarks/downstream_cnn.py --smoke"
        train_config = cfg
        num_train, num_test = len(train_x), len(test_y)

    text = dc.render(["sym-0.5", "sym-0.8"], runs, again, Args, seconds)
    assert text.startswith(dc.START) and text.endswith(dc.END)
    assert "not run" in text  # sym-0.8 never ran
    assert f"{100 * again[('clean', 'clean')]['test_acc']:.2f}" in text


def test_plot_draws_given_purified_and_clean_bars_for_the_runs_that_finished(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    results = {("clean", "clean"): {"test_acc": 0.81}, ("sym-0.8", "given"): {"test_acc": 0.575},
               ("sym-0.8", "purified"): {"test_acc": 0.627}, ("sym-0.5", "given"): {"test_acc": 0.70}}
    drawn = dc.plot(["sym-0.8", "sym-0.5"], results, tmp_path / "d.png")
    assert drawn.series == ["given labels", "purified labels", "clean labels"] and drawn.panels == 1
    assert Image.open(drawn.path).size[0] > 400  # decodes
    assert dc.plot(["sym-0.8"], {}, tmp_path / "none.png") is None  # nothing finished: no file
    assert not (tmp_path / "none.png").exists()
