"""``benchmarks/suite_report.py``: the suite's summary tables, from per-cell accuracies made up
here (no cached runs needed), so each number can be worked out by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import suite_data as data  # noqa: E402
import suite_report as report  # noqa: E402

PEERS = ("fc-logistic", "cleanlab", "knn")


def _cell(features: str, noise: str, trusted: int, draw: int = 0) -> data.Cell:
    return data.Cell(features, 10000, noise, trusted, draw)


def _row(default: float, peers: tuple[float, float, float], given: float = 0.5) -> dict:
    return {"dmlp-nonet": default, **dict(zip(PEERS, peers)), "given": given}


def test_summary_ranks_gaps_and_worst_cell_count_only_cells_where_every_method_ran():
    a, b, lonely = _cell("kmeans", "sym20", 10), _cell("kmeans", "sym50", 10), _cell("kmeans", "sym80", 10)
    acc = {a.key: _row(0.80, (0.70, 0.60, 0.50), given=0.75),
           b.key: _row(0.60, (0.65, 0.40, 0.30), given=0.62),
           lonely.key: {"dmlp-nonet": 0.10, "given": 0.90}}  # no peers: left out of the summary
    rows = {r[0]: r for r in report.summary([a, b, lonely], acc, ["dmlp-nonet", *PEERS])}
    default = rows["default"]
    assert default[1] == "70.00"  # mean of 80 and 60, not pulled down by the lonely cell
    assert default[2] == "1.50"  # first in a, second in b
    assert default[3] == "+2.50"  # (+10 - 5) / 2 against the best peer of each cell
    assert default[4] == "-2.00"  # its worst cell against the given labels: b, 60 - 62


def test_behind_table_counts_cells_more_than_half_a_point_behind_the_best_peer():
    cells = [_cell("efficientnet-lite0", noise, t) for noise in ("sym20", "sym80") for t in (10, 100)]
    acc = {cells[0].key: _row(0.900, (0.904, 0.80, 0.70)),   # 0.4 behind: not counted
           cells[1].key: _row(0.910, (0.900, 0.80, 0.70)),   # ahead
           cells[2].key: _row(0.450, (0.300, 0.56, 0.66)),   # 21 behind the kNN vote
           cells[3].key: _row(0.750, (0.700, 0.66, 0.68))}
    rows = report.behind_table(cells, acc, "dmlp-nonet")
    assert rows == [["EfficientNet-Lite0 (ImageNet)", "10", "1/2", "-21.0"],
                    ["EfficientNet-Lite0 (ImageNet)", "100", "0/2", ""]]


def test_trusted_size_table_averages_only_settings_that_have_every_size():
    cells = [_cell("kmeans", "sym20", t) for t in (10, 25, 50, 100)] + [_cell("kmeans", "sym50", 10)]
    acc = {c.key: {"dmlp-nonet": 0.6 + c.trusted / 1000, "given": 0.5} for c in cells}
    table = report.trusted_size_table(cells, acc, "dmlp-nonet")
    assert table[0] == ["feature set", "given", "10/class", "25/class", "50/class", "100/class", "settings"]
    # sym50 has only 10 a class, so it is left out of every column
    assert table[1] == ["k-means (CPU, unsupervised)", "50.0", "61.0", "62.5", "65.0", "70.0", "1"]


@pytest.mark.parametrize("features, rows, kept", [("efficientnet-lite2", 50000, False),
                                                  ("efficientnet-lite2", 10000, True),
                                                  ("kmeans", 50000, True)])
def test_a_feature_set_made_for_fewer_rows_has_no_larger_cells(features, rows, kept):
    import suite

    args = suite.parse_args(["run", "--draws", "0", "--features", features, "--rows", str(rows),
                             "--noises", "sym20", "--trusted", "10"])
    assert bool(data.cells_of(args)) == kept


def test_an_unknown_method_is_refused_in_one_line_naming_the_known_ones(capsys):
    import suite

    with pytest.raises(SystemExit):
        suite.parse_args(["run", "--methods", "dmlp-nonet,dmlp:nonet"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown method dmlp:nonet" in err and "dmlp:noshrink" in err and "dmlp-nonet" in err.split("known:")[1]


def _estimate(truth: float, estimate: float, interval: tuple[float, float], warned: bool, residual: float | None,
              seconds: float = 6.0) -> dict:
    return {"label_acc": truth, "seconds": seconds, "warned": warned,
            "accuracy_estimate": {"accuracy": estimate, "interval": list(interval)},
            "noise_rate": {"auto": residual}}


def test_estimate_row_scores_the_estimate_its_interval_its_warning_and_the_residual_noise():
    records = [_estimate(0.80, 0.84, (0.78, 0.90), False, 0.15),   # +4: outside ±3, covered
               _estimate(0.60, 0.61, (0.62, 0.70), True, 0.42),    # +1, not covered; warned, and right to
               _estimate(0.90, 0.88, (0.80, 0.95), True, None)]    # -2, covered; warned wrongly; no residual
    given = [0.70, 0.65, 0.85]
    plain = [{"seconds": 2.0}, {"seconds": 3.0}, None]
    row = report.estimate_row("k-means, 10/class", records, given, plain)
    assert row[:2] == ["k-means, 10/class", "3"]
    assert row[2:6] == ["+1.0", "2.3", "+4.0", "2/3"]  # mean of 4, 1, -2; mean |.|; the worst keeps its sign
    assert row[6:8] == ["2/3", "2/3"]
    # residual noise: truths 20 and 40 against 15 and 42; the run without an estimate is left out
    assert row[8:10] == ["3.5", "-5.0"]
    assert row[10] == "2.5×"  # median of 6/2 and 6/3; the cell without a plain run is left out


def test_error_stats_say_so_when_no_estimate_applies():
    assert report.error_stats([None, None], [0.1, 0.2]) == ["—", "—", "—"]


def _network_run(with_net: float, without: float, net_s: float, rest_s: float) -> dict:
    net_wins = with_net > without
    return {"candidates": [
        {"name": "round 5", "family": "least-squares rounds", "trusted_nll": 0.5, "label_accuracy": without,
         "selected": not net_wins},
        {"name": "mlp", "family": "network candidate", "trusted_nll": 0.4 if net_wins else 0.6,
         "label_accuracy": with_net, "selected": net_wins}],
        "timings": {"network candidate": net_s, "total": net_s + rest_s}}


def test_network_groups_split_the_gain_by_rows_and_trusted_size():
    small, big = _cell("kmeans", "sym20", 25), data.Cell("kmeans", 50000, "sym20", 100, 0)
    runs = {("dmlp", small.key): _network_run(0.70, 0.71, 10.0, 1.0),   # not chosen: no gain
            ("dmlp", big.key): _network_run(0.89, 0.87, 200.0, 8.0)}    # chosen: +2 points at 25x
    rows = report.network_groups([small, big], runs)
    assert rows == [["k-means (CPU, unsupervised)", "10,000", "25", "1", "+0.00", "+0.00", "+0.00", "0/1", "10.00×"],
                    ["k-means (CPU, unsupervised)", "50,000", "100", "1", "+2.00", "+2.00", "+2.00", "1/1", "25.00×"]]
