"""Drawing the trusted set (``dmlp_plugin.trusted`` and ``dmlp trusted``)."""

from __future__ import annotations

import numpy as np
import pytest

from dmlp_plugin.cli import main
from dmlp_plugin.errors import InputError, LabelError
from dmlp_plugin.trusted import draw_trusted_set


@pytest.fixture
def clean():
    return np.random.default_rng(0).integers(0, 5, 400)


def test_per_class_draws_exactly_n_of_every_class(clean):
    idx = draw_trusted_set(clean, per_class=7, seed=3)
    assert np.bincount(clean[idx]).tolist() == [7] * 5
    assert np.array_equal(idx, np.unique(idx)) and idx.dtype == np.int64
    assert np.array_equal(idx, draw_trusted_set(clean, per_class=7, seed=3))  # seeded
    assert not np.array_equal(idx, draw_trusted_set(clean, per_class=7, seed=4))


def test_size_draws_that_many_and_needs_every_class(clean):
    idx = draw_trusted_set(clean, size=50, seed=1)
    assert len(idx) == 50 and len(np.unique(idx)) == 50 and set(clean[idx]) == set(range(5))
    rare = np.r_[np.zeros(399, int), 1]
    with pytest.raises(LabelError, match="no sample of class\\(es\\) 1; draw a larger one, or use per_class"):
        draw_trusted_set(rare, size=10, seed=0)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(per_class=100), LabelError, "has only .* fewer than the 100 per class"),
    (dict(), InputError, "exactly one of per_class"),
    (dict(per_class=2, size=10), InputError, "exactly one of per_class"),
    (dict(size=400), InputError, "size must be a count in \\[1, 400\\)"),
    (dict(per_class=0), InputError, "per_class must be a count >= 1"),
])
def test_bad_requests_are_named(clean, kwargs, error, message):
    with pytest.raises(error, match=message):
        draw_trusted_set(clean, **kwargs)


def test_cli_writes_indices_and_labels_that_purify_reads(clean, tmp_path, capsys):
    np.save(tmp_path / "clean.npy", clean)
    out = tmp_path / "trusted.npy"
    assert main(["trusted", "--labels", str(tmp_path / "clean.npy"), "--per-class", "4", "-o", str(out)]) == 0
    idx, labels = np.load(out), np.load(tmp_path / "trusted_labels.npy")
    assert len(idx) == 20 and np.array_equal(labels, clean[idx])
    assert "--val-indices" in capsys.readouterr().out
    assert main(["trusted", "--labels", str(tmp_path / "clean.npy"), "--size", "10", "-o",
                 str(tmp_path / "t.json")]) == 2
    assert "--output must end in .npy" in " ".join(capsys.readouterr().err.split())
    assert main(["trusted", "--labels", str(tmp_path / "clean.npy"), "--per-class", "0", "-o", str(out)]) == 2
    assert "--per-class must be a count >= 1" in " ".join(capsys.readouterr().err.split())
