"""A hostile ``--dmlp`` file never reaches training, and every stop is one line with status 2.

The hostile test trained Co-teaching on a 50,000-row file with 10, -1 or 2**40 in 100 rows
(exit 0), crashed inside training with half the rows set to 10, accepted NaN soft labels,
and answered a plain ``.npy`` with numpy's context-manager message.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_integrate_runtime import C, N, make_result, no_active_run, start  # noqa: F401 (autouse fixture)

from dmlp_integrations import runtime


@pytest.fixture
def good(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, C, N)
    return make_result(clean, clean)


def refused(tmp_path, capsys, result, match: str) -> None:
    """Starting a run on ``result`` stops at argument parsing with status 2, naming the problem."""
    path = result.save(tmp_path / "hostile.npz")
    with pytest.raises(SystemExit) as exit_:
        start("coteaching", tmp_path, "--dmlp", str(path))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "train.py: error: --dmlp:" in err and match in err, err
    assert "Traceback" not in err
    assert runtime.active() is None and not (tmp_path / "record.json").exists()  # nothing injected


@pytest.mark.parametrize("bad", [10, -1, 2 ** 40])
def test_out_of_range_labels_in_100_rows_are_refused(tmp_path, capsys, good, bad):
    good.labels[np.arange(100) * 7] = bad
    refused(tmp_path, capsys, good, f"100 of {N} labels are outside [0, {C}) (first: {bad} at row 0)")


def test_half_the_rows_out_of_range_are_refused_before_training(tmp_path, capsys, good):
    good.labels[::2] = 10
    refused(tmp_path, capsys, good, f"{N // 2} of {N} labels are outside [0, {C})")


def test_out_of_range_given_labels_are_refused(tmp_path, capsys, good):
    good.given_labels[5] = C
    good.metadata.pop("labels_sha")
    refused(tmp_path, capsys, good, f"1 of {N} given_labels are outside [0, {C}) (first: {C} at row 5)")


@pytest.mark.parametrize("damage,words", [
    (lambda s: s.__setitem__((3, 0), np.nan), "not finite (NaN or infinite) (first: row 3)"),
    (lambda s: s.__setitem__((4, 0), np.inf), "not finite (NaN or infinite) (first: row 4)"),
    (lambda s: s.__setitem__((5, slice(0, 2)), [-0.5, 0.5 + s[5, 1]]), "negative (first: row 5)"),
    (lambda s: s.__setitem__((6, 0), s[6, 0] + 0.1), "not summing to 1 (first: row 6)"),
])
def test_soft_labels_must_be_distributions(tmp_path, capsys, good, damage, words):
    damage(good.soft_labels)
    refused(tmp_path, capsys, good, f"soft_labels rows are {words}")


def test_labels_that_are_not_integers_are_refused(tmp_path, capsys, good):
    good.labels = good.labels.astype(np.float32)
    refused(tmp_path, capsys, good, "labels are float32, not integers")


def test_a_plain_npy_in_place_of_the_result_gets_one_line(tmp_path, capsys, good):
    np.save(tmp_path / "labels.npy", good.labels)
    with pytest.raises(SystemExit) as exit_:
        start("cdr", tmp_path, "--dmlp", str(tmp_path / "labels.npy"))
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "is a single numpy array (.npy), not a dmlp-plugin result (.npz from dmlp purify)" in err
    assert "context manager" not in err


def test_debug_adds_the_traceback_and_still_stops(tmp_path, capsys, good, monkeypatch):
    good.labels[0] = 10
    path = good.save(tmp_path / "hostile.npz")
    monkeypatch.setenv("DMLP_DEBUG", "1")
    with pytest.raises(SystemExit) as exit_:
        start("coteaching", tmp_path, "--dmlp", str(path))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" in err and "CorruptFileError" in err
    assert runtime.active() is None


SCRIPT = """
    import argparse
    import dmlp_integrations.runtime as dmlp_runtime
    parser = argparse.ArgumentParser()
    parser.add_argument("labels")
    dmlp_runtime.setup(parser, "cdr")
    args = parser.parse_args()
    labels = [int(y) for y in open(args.labels).read().split()]
    try:  # upstream code that swallows its own errors must not swallow ours
        labels = dmlp_runtime.inject("cdr", labels, part="all")
    except Exception:
        print("swallowed")
    print("TRAINING ON", len(labels))
"""


def test_an_alignment_error_in_an_upstream_script_is_one_line_and_status_2(tmp_path, good):
    path = good.save(tmp_path / "purified.npz")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    (tmp_path / "labels.txt").write_text(" ".join(str(y) for y in good.given_labels[:-1]))  # one sample short
    argv = [sys.executable, str(script), "--dmlp", str(path), "--dmlp-record", str(tmp_path / "r.json"),
            str(tmp_path / "labels.txt")]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "TRAINING ON" not in out.stdout and "swallowed" not in out.stdout
    assert out.stderr.strip().splitlines()[-1] == (
        f"[dmlp-plugin] error: cdr holds {N - 1} all labels but its index map has {N} positions")
    assert "Traceback" not in out.stderr


def test_with_debug_the_traceback_comes_too_and_the_run_still_stops(tmp_path, capsys, good, monkeypatch):
    start("cdr", tmp_path, "--dmlp", str(good.save(tmp_path / "purified.npz")))
    monkeypatch.setenv("DMLP_DEBUG", "1")
    with pytest.raises(SystemExit) as exit_:
        try:  # as an upstream that swallows its own errors
            runtime.inject("cdr", good.given_labels[:-1], part="all")
        except Exception:
            pytest.fail("the error was swallowed: training would go on")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" in err and "AlignmentError" in err
    assert err.strip().splitlines()[-1] == (
        f"[dmlp-plugin] error: cdr holds {N - 1} all labels but its index map has {N} positions")
