"""A trusted set from nothing: ``dmlp trusted --to-label`` → labelled CSV → ``--from-csv`` →
``dmlp purify`` (and the pieces: the draw, the CSV's checks)."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from review_fixtures import image_folder, mean_colours

from dmlp_plugin import PurifyResult
from dmlp_plugin.cli import main
from dmlp_plugin.errors import InputError, LabelError
from dmlp_plugin.review import open_images
from dmlp_plugin.trusted import draw_to_label
from dmlp_plugin.trusted_csv import read_labelled_csv


def test_draw_is_balanced_over_given_labels():
    given = np.r_[np.zeros(500, int), np.ones(40, int), np.full(60, 2)]  # class 0 is common
    rows = draw_to_label(given, 31, seed=0)
    assert sorted(np.bincount(given[rows]).tolist()) == [10, 10, 11]
    assert len(np.unique(rows)) == 31 and np.array_equal(rows, draw_to_label(given, 31, seed=0))


def test_draw_is_uniform_within_each_class():
    """Every row of a class is equally likely: over 400 seeds each of class 1's 40 rows is
    drawn about 400 * 10/40 = 100 times (a draw favouring early, late or any rows fails)."""
    given = np.r_[np.zeros(500, int), np.ones(40, int), np.full(60, 2)]
    hits = np.zeros(len(given))
    for seed in range(400):
        hits[draw_to_label(given, 30, seed=seed)] += 1
    for c in range(3):
        rows = np.flatnonzero(given == c)
        expected = 400 * 10 / len(rows)
        assert abs(hits[rows].mean() - expected) < 1e-9  # exactly 10 a class every time
        # binomial sd is at most sqrt(expected) ≈ 10 for class 1; 5 sd is a wide margin
        assert np.abs(hits[rows] - expected).max() < 5 * np.sqrt(expected)
    first_half = np.flatnonzero(given == 0)[:250]
    assert 0.45 < hits[first_half].sum() / hits[given == 0].sum() < 0.55


@pytest.mark.parametrize("count, error, message", [
    (2, InputError, "at least 3 \\(one row for each of the 3 given classes\\)"),
    (30, LabelError, "given class 1 has only 4 rows, fewer than the 10 asked"),
    (1000, InputError, "there are only 108 rows"),
])
def test_bad_draws_are_named(count, error, message):
    given = np.r_[np.zeros(100, int), np.ones(4, int), np.full(4, 2)]
    with pytest.raises(error, match=message):
        draw_to_label(given, count)


def _csv(path, rows):
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([["index", "path", "given_label", "given_class", "true_label"], *rows])
    return path


@pytest.mark.parametrize("rows, message", [
    ([[3, "a.png", 0, "cat", "dgo"], [4, "b.png", 1, "dog", "dog"]],
     "line 2: true_label 'dgo' is not a known class; use a class name \\(cat, dog\\) or number 0-1"),
    ([[3, "a.png", 0, "cat", "5"], [4, "b.png", 1, "dog", "dog"]], "true_label '5' is not a known class"),
    ([[3, "a.png", 0, "cat", "cat"], [3, "a.png", 0, "cat", "dog"], [4, "b.png", 1, "dog", "dog"]],
     "index 3 appears twice \\(lines 2 and 3\\)"),
    ([[3, "a.png", 0, "cat", ""], [4, "b.png", 1, "dog", ""], [5, "c.png", 1, "dog", "cat"]],
     "2 row\\(s\\) have no true_label \\(first: index 3, line 2\\)"),
    ([[-3, "a.png", 0, "cat", "cat"]], "line 2: index '-3' is not a row number"),
    ([[3, "a.png", 0, "cat", "cat"], [4, "b.png", 1, "dog", "cat"]], "no sample of class\\(es\\) 1"),
])
def test_csv_mistakes_get_one_line_each(tmp_path, capsys, rows, message):
    path = _csv(tmp_path / "labelled.csv", rows)
    if "no sample" not in message:  # that one is the command's check (the file itself is well formed)
        with pytest.raises((InputError, LabelError), match=message):
            read_labelled_csv(path)
    assert main(["trusted", "--from-csv", str(path), "-o", str(tmp_path / "t.npy")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error:") and re.search(message, err) and "Traceback" not in err
    assert not (tmp_path / "t.npy").exists()


def test_names_numbers_and_case_are_read(tmp_path):
    path = _csv(tmp_path / "l.csv", [[9, "x", 1, "dog", "CAT"], [2, "y", 0, "cat", "1"], [5, "z", 1, "dog", " dog "]])
    rows = read_labelled_csv(path)
    assert rows.indices.tolist() == [2, 5, 9] and rows.labels.tolist() == [1, 1, 0]
    assert rows.class_names == ["cat", "dog"] and rows.given.tolist() == [0, 1, 1]


def test_to_label_then_from_csv_then_purify_end_to_end(tmp_path, capsys):
    root = image_folder(tmp_path / "imgs", per_class=40)
    images = open_images(root)
    clean = images.targets
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(len(clean)) < 0.4, (clean + rng.integers(1, 3, len(clean))) % 3, clean)
    np.save(tmp_path / "noisy.npy", noisy)
    np.save(tmp_path / "feats.npy", mean_colours(images))

    assert main(["trusted", "--to-label", "30", "--images", str(root), "--labels", str(tmp_path / "noisy.npy"),
                 "-o", str(tmp_path / "to_label.csv")]) == 0
    assert "dmlp trusted --from-csv labelled.csv" in " ".join(capsys.readouterr().out.split())
    with open(tmp_path / "to_label.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and (tmp_path / "to_label.html").is_file()
    picked = np.array([int(r["index"]) for r in rows])
    assert np.bincount(noisy[picked], minlength=3).tolist() == [10, 10, 10]  # balanced by GIVEN label
    assert all(r["path"].endswith(".png") and r["given_class"] == images.classes[noisy[int(r["index"])]]
               for r in rows)
    for r in rows:  # the person: types each image's true class
        r["true_label"] = images.classes[clean[int(r["index"])]]
    with open(tmp_path / "labelled.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    assert main(["trusted", "--from-csv", str(tmp_path / "labelled.csv"), "-o", str(tmp_path / "trusted.npy")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    right = int((noisy[picked] == clean[picked]).sum())
    assert f"their given label was right on {right}" in out
    idx, labels = np.load(tmp_path / "trusted.npy"), np.load(tmp_path / "trusted_labels.npy")
    assert np.array_equal(np.sort(idx), np.sort(picked)) and np.array_equal(labels, clean[idx])

    assert main(["purify", "--features", str(tmp_path / "feats.npy"), "--labels", str(tmp_path / "noisy.npy"),
                 "--val-indices", str(tmp_path / "trusted.npy"), "--val-labels", str(tmp_path / "trusted_labels.npy"),
                 "-o", str(tmp_path / "purified.npz"), "--no-progress",
                 "--set", "mlp_candidate=false", "--set", "logistic_candidate=false"]) == 0
    result = PurifyResult.load(tmp_path / "purified.npz")
    rest = np.setdiff1d(np.arange(len(clean)), idx)
    assert (result.labels[rest] == clean[rest]).mean() > (noisy[rest] == clean[rest]).mean() + 0.2
