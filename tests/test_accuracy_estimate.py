"""The cross-fitted accuracy estimate (`purify_dataset(..., estimate_accuracy=True)`).

Planted clusters with known symmetric noise: the truth is the accuracy of the returned
labels on the non-trusted rows, which the estimate never sees.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dmlp_plugin import InputError, PurifyConfig, purify_dataset
from dmlp_plugin.accuracy_estimate import (AccuracyEstimate, estimate_label_accuracy, trusted_folds,
                                           wilson_interval)
from engine_fixtures import Planted, one_torch_thread, planted_clusters  # noqa: F401

# Short runs: the estimate describes whatever config it is given, so four rounds without
# the network candidate test it as well as the full default, in a fraction of the time.
FAST = PurifyConfig(rounds=4, mlp_candidate=False)
# Replaces every label by a linear head's prediction (the paper's loop without IPC, η = 1,
# no selection): on weakly separated clusters with little noise that throws away labels
# that were mostly right.
HARMFUL = PurifyConfig.paper(ipc=False, epochs=10, eac_period=5)


def estimate_and_truth(data: Planted, config=FAST, seed: int = 0):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = purify_dataset(data.features, data.given, **data.purify_kwargs(), config=config, seed=seed,
                                estimate_accuracy=True, device="cpu")
    return result, result.accuracy(data.clean, exclude_trusted=True), caught


SETTINGS = {0.2: 0, 0.5: 1, 0.8: 2}  # noise rate: seed (data, noise, trusted set and engine)


@pytest.fixture(scope="module")
def runs() -> dict:
    """rate → (data, result with an estimate, true accuracy, warnings caught)."""
    out = {}
    for rate, seed in SETTINGS.items():
        data = planted_clusters(n=3000, num_trusted=500, rate=rate, seed=seed)
        out[rate] = (data, *estimate_and_truth(data, seed=seed))
    return out


# -- against the truth ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", SETTINGS)
def test_estimate_is_close_to_the_true_accuracy_and_its_interval_covers_it(runs, rate):
    """500 held-out rows give a Wilson interval about ±3 points wide at 85-95% accuracy
    (one standard error 1-1.6 points), so we ask for the truth within 4 points and inside
    the interval. Scoring the full run's labels of the trusted rows instead (their clean
    labels: 100%) or the given labels (40-85%) would fail."""
    data, result, truth, _ = runs[rate]
    est = result.accuracy_estimate
    assert result.estimated_accuracy == est.accuracy
    low, high = result.estimated_accuracy_interval
    assert abs(est.accuracy - truth) < 0.04, (est.accuracy, truth)
    assert low <= truth <= high, (low, truth, high)
    assert 0.015 < high - low < 0.08  # an interval of the size 500 rows allow, not a formality
    given = float((data.given[data.trusted] == data.clean[data.trusted]).mean())
    assert est.given_accuracy == given and est.num_rows == 500 and est.folds == 5
    assert est.accuracy - est.given_accuracy == pytest.approx((est.fixed - est.broken) / 500)


def test_the_estimate_leaves_the_returned_labels_unchanged(runs):
    data, with_estimate, _, _ = runs[0.5]
    plain = purify_dataset(data.features, data.given, **data.purify_kwargs(), config=FAST,
                           seed=SETTINGS[0.5], device="cpu")
    np.testing.assert_array_equal(plain.soft_labels, with_estimate.soft_labels)
    assert plain.accuracy_estimate is None and plain.estimated_accuracy is None
    assert with_estimate.timings["accuracy_estimate"] > 0


# -- warnings ------------------------------------------------------------------------------------


def test_warns_when_purification_makes_labels_worse():
    """10% noise on clusters a linear head separates only ~55% of the time: replacing the
    given labels (~91% right) with the head's predictions loses ~35 points."""
    data = planted_clusters(n=3000, num_trusted=500, rate=0.1, separation=1.5, seed=0)
    result, truth, caught = estimate_and_truth(data, HARMFUL)
    est = result.accuracy_estimate
    assert truth < 0.75 and est.accuracy < est.given_accuracy - 0.2 and est.worse_than_given
    assert est.worse_p_value < 1e-6
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any("look worse than the given ones" in m and f"{est.given_accuracy:.2%}" in m for m in messages)


def test_no_warning_when_purification_helps(runs):
    _, result, _, caught = runs[0.5]
    assert result.estimated_accuracy > result.accuracy_estimate.given_accuracy + 0.15
    assert not [w for w in caught if "look worse" in str(w.message)]


def test_warns_when_the_trusted_rows_given_labels_were_overwritten_with_clean_ones():
    data = planted_clusters(n=1000, num_trusted=200, seed=5)
    data.given[data.trusted] = data.clean[data.trusted]
    _, _, caught = estimate_and_truth(data)
    assert any("estimate is optimistic" in str(w.message) for w in caught)


# -- protocols and inputs ------------------------------------------------------------------------


def test_separate_trusted_set_raises_before_purifying():
    """The Clothing1M protocol's trusted rows have no given labels to purify."""
    data = planted_clusters(n=600, num_trusted=100)
    train = np.setdiff1d(np.arange(600), data.trusted)
    with pytest.raises(InputError, match="val_indices"):
        purify_dataset(data.features[train], data.given[train], val_features=data.features[data.trusted],
                       val_labels=data.clean[data.trusted], estimate_accuracy=True,
                       on_epoch=lambda *a: pytest.fail("purified before refusing"))


def test_a_class_with_one_trusted_row_is_refused_before_purifying():
    data = planted_clusters(n=600, num_trusted=100)
    labels = data.clean[data.trusted].copy()
    labels[labels == 0] = 1
    labels[0] = 0
    with pytest.raises(InputError, match="at least 2 trusted rows"):
        purify_dataset(data.features, data.given, val_indices=data.trusted, val_labels=labels,
                       estimate_accuracy=True, on_epoch=lambda *a: pytest.fail("purified before refusing"))


def test_folds_are_stratified_balanced_and_cover_each_row_once():
    labels = np.repeat(np.arange(4), [10, 7, 3, 2])
    folds = trusted_folds(labels, 3, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(labels)))
    assert {len(f) for f in folds} <= {7, 8}
    for fold in folds:
        rest = np.setdiff1d(np.arange(len(labels)), fold)
        assert set(labels[rest]) == {0, 1, 2, 3}  # every fold run keeps every class
        assert abs((labels[fold] == 0).sum() - 10 / 3) < 1  # stratified
    with pytest.raises(InputError, match="folds"):
        trusted_folds(labels, 1)
    with pytest.raises(InputError, match="folds"):
        trusted_folds(labels, 23)


def test_each_row_is_scored_by_the_fold_run_that_held_it_out():
    clean = np.arange(20) % 4
    given = clean.copy()
    given[:5] = (clean[:5] + 1) % 4
    seen = []

    def purify_fold(held_out):
        seen.append(held_out)
        out = clean[held_out].copy()
        out[held_out % 10 == 0] += 1  # rows 0 and 10 come back wrong
        return out % 4

    est = estimate_label_accuracy(purify_fold, clean, given, folds=4)
    assert len(seen) == 4 and sorted(np.concatenate(seen).tolist()) == list(range(20))
    assert est.accuracy == 18 / 20 and est.given_accuracy == 15 / 20
    assert (est.fixed, est.broken) == (4, 1)  # rows 1-4 fixed, row 10 broken, row 0 wrong both times
    assert not est.worse_than_given


# -- the interval --------------------------------------------------------------------------------


@pytest.mark.parametrize("k, n, expected", [
    # scipy.stats.binomtest(k, n).proportion_ci(method="wilson")
    (5, 10, (0.236593, 0.763407)),
    (0, 10, (0.0, 0.277533)),
    (10, 10, (0.722467, 1.0)),
    (870, 1000, (0.847732, 0.889436)),
])
def test_wilson_interval_matches_reference_values(k, n, expected):
    assert wilson_interval(k, n) == pytest.approx(expected, abs=1e-6)


def test_wilson_interval_narrows_with_more_rows_and_lower_confidence():
    assert np.diff(wilson_interval(80, 100))[0] > np.diff(wilson_interval(800, 1000))[0]
    assert np.diff(wilson_interval(80, 100, 0.9))[0] < np.diff(wilson_interval(80, 100, 0.99))[0]
    with pytest.raises(InputError):
        wilson_interval(11, 10)


def test_estimate_round_trips_through_a_dict():
    est = AccuracyEstimate(0.8, (0.75, 0.85), 0.6, (0.55, 0.65), 200, 5, 0.95, 50, 10)
    assert AccuracyEstimate.from_dict(est.to_dict()) == est


# -- the benchmark script ------------------------------------------------------------------------


def test_benchmark_script_core_tables_and_section(tmp_path):
    """A smoke run of benchmarks/accuracy_estimate.py on planted clusters (its numbers say
    nothing at 4 epochs); the section lands between its markers only."""
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    import accuracy_estimate as ae

    data = planted_clusters(n=1500, num_classes=10, num_trusted=200, seed=6)
    runs = ae.run_setting(data.features, data.clean, "Symmetric 50%", "symmetric", 0.5, configs=["default"],
                          seed=0, num_trusted=200, epochs=4, folds=(3, 4), log=lambda _: None)
    assert [r.folds for r in runs] == [3, 4] and runs[0].plain_s == runs[1].plain_s  # one plain run
    run = runs[0]
    assert run.same_labels and run.plain_s > 0 and run.estimate_s > run.plain_s
    assert run.interval[0] <= run.estimate <= run.interval[1] and 0.3 < run.given < 0.7
    for head, body in (ae.runs_table(runs), ae.summary_table(runs)):
        assert body and all(len(row) == len(head) for row in body)
    args = ae.parse_args(["--rates", "0.5", "--asym-rates", "", "--epochs", "4", "--draws", "0,1",
                          "--folds", "3,4"])
    assert args.draw_list == [1] and args.fold_list == [3, 4]  # draw 0 is already among --seeds
    text = ae.render(ae.Report(args, "2026-01-01 00:00", "0 / 0 / 0", runs, 1500, "0 / 0 / 0", 1.0))
    assert text.startswith(ae.START) and text.endswith(ae.END) and "--epochs 4" in text
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n<!-- purify:start -->\npurify\n<!-- purify:end -->\n")
    ae.SECTION.write(text, path)
    ae.SECTION.write(text, path)
    written = path.read_text()
    assert "purify\n<!-- purify:end -->" in written and written.count(ae.START) == 1
