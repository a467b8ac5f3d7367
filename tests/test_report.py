"""`dmlp report` and the plots: PNGs that decode, with the series they should hold.

The store is filled by the real runner on synthetic clusters with a tiny protocol, so
the records have exactly the shape `dmlp reproduce` writes.
"""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")  # in the dev extra; the missing-extra error is tested below
from matplotlib.image import imread  # noqa: E402

from dmlp_plugin import PurifyResult, purify_dataset  # noqa: E402
from dmlp_plugin.cli import main  # noqa: E402
from dmlp_plugin.errors import InputError, MissingFileError  # noqa: E402
from dmlp_plugin.report import (MissingExtraError, plot_confusion, plot_downstream, plot_history,  # noqa: E402
                                results_section, write_report)
from dmlp_plugin.reproduce import Protocol, ResultStore, run_table  # noqa: E402

from test_reproduce import TINY, synthetic_inputs  # noqa: E402  (the same tiny protocol and clusters)

@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A store with table1 (12 cells) and table7 (24 cells), as `dmlp reproduce` writes them."""
    root = tmp_path_factory.mktemp("results")
    inputs = synthetic_inputs()
    store = ResultStore(root)
    run_table("table1", store, inputs, protocol=TINY)
    # the smoke protocol's trusted sizes (50 to 354), on fewer rows and dimensions
    run_table("table7", store, synthetic_inputs(1000), protocol=Protocol(
        epochs=2, mlp_epochs=1, mlp_repeats=1, probe_iters=3, trusted_scale=5.0, trusted_power=0.5))
    return root


def decodes(path) -> tuple[int, int]:
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas
    return image.shape[:2]


def test_plot_history_of_a_result_draws_label_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 3, 300)
    x = (rng.normal(size=(3, 8)) * 3)[clean] + rng.normal(size=(300, 8))
    noisy = np.where(rng.random(300) < 0.3, rng.integers(0, 3, 300), clean)
    result = purify_dataset(x.astype(np.float32), noisy, val_indices=np.arange(30), val_labels=clean[:30],
                            clean_labels=clean, device="cpu", config={"mlp_candidate": False})
    plot = plot_history(result, tmp_path / "h.png")
    assert plot.series[0] == "label accuracy (%) per mixing round"
    assert _line(plot, "labels written").get_ydata()[-1] == pytest.approx(
        100 * result.metadata["label_accuracy_after"])
    candidates = result.metadata["candidates"]
    assert list(_line(plot, "candidates scored after the loop").get_ydata()) == pytest.approx(
        [100 * c["label_accuracy"] for c in candidates])
    (chosen,) = [c for c in candidates if c["selected"]]
    assert _line(plot, f"chosen: {chosen['name']}").get_ydata()[0] == pytest.approx(100 * chosen["label_accuracy"])
    decodes(plot.path)


def _line(plot, prefix: str):
    """The one line of the run plot's first panel whose legend label starts with ``prefix``."""
    (line,) = [ln for ln in plot.figure.axes[0].get_lines() if ln.get_label().startswith(prefix)]
    return line


def _hand_made_result(candidates, history, **metadata) -> PurifyResult:
    rng = np.random.default_rng(3)
    return PurifyResult.from_soft_labels(rng.random((200, 3)), rng.integers(0, 3, 200), history=history,
                                         metadata={"candidates": candidates, "num_trusted": 20, **metadata})


CANDIDATES = [
    {"name": "least squares", "trusted_nll": 0.95, "label_accuracy": 0.69, "selected": False},
    {"name": "logistic", "trusted_nll": 0.81, "label_accuracy": 0.756, "selected": True},
    {"name": "network", "trusted_nll": 0.88, "label_accuracy": 0.741, "selected": False},
]
FLAT = [{"epoch": e, "label_accuracy": 0.548 if e < 40 else 0.69, "eac_mixed": e % 10 == 0} for e in range(1, 51)]


def test_the_run_plot_ends_at_the_summary_and_shows_every_candidate(tmp_path):
    from rich.console import Console

    from dmlp_plugin.cli.purify import summary_table

    result = _hand_made_result(CANDIDATES, FLAT, label_accuracy_before=0.548, label_accuracy_after=0.756)
    plot = plot_history(result, tmp_path / "run.png")
    console = Console(file=io.StringIO(), width=200)
    console.print(summary_table(result))
    summary = float(re.search(r"→ ([0-9.]+)%", console.file.getvalue()).group(1))  # "54.80% → 75.60%"
    written = _line(plot, "labels written")
    assert round(written.get_ydata()[-1], 2) == summary == 75.6
    assert list(written.get_xdata()) == [50, 51]  # from the last epoch to the step after the loop
    points = _line(plot, "candidates scored after the loop")
    assert list(points.get_ydata()) == pytest.approx([69.0, 75.6, 74.1]) and set(points.get_xdata()) == {51}
    assert _line(plot, "chosen: logistic").get_ydata()[0] == pytest.approx(75.6)
    # every line is in the legend: the curve, the EAC epochs (once), the candidates, the choice, the given labels
    ax = plot.figure.axes[0]
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    labels = {ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert labels == legend and len(legend) == 6 and "given labels: 54.8%" in legend
    assert sum(ln.get_label() == "_nolegend_" for ln in ax.get_lines()) == 4  # the other EAC epochs
    # the second panel: each candidate's trusted log-loss, the chosen one in red
    bars = plot.figure.axes[1].patches
    assert [b.get_width() for b in bars] == pytest.approx([0.95, 0.81, 0.88])
    assert [b.get_facecolor() for b in bars].count(bars[1].get_facecolor()) == 1
    assert plot.panels == 2 and not plot.notes
    decodes(plot.path)


def test_a_result_without_candidates_still_ends_at_the_labels_written(tmp_path):
    # written before candidates were recorded: the choice is named, its accuracy is not
    old = _hand_made_result([], FLAT, label_accuracy_after=0.701, selected="logistic",
                            candidate_nll={"logistic": 0.8})
    plot = plot_history(old, tmp_path / "old.png")
    assert _line(plot, "labels written").get_ydata()[-1] == pytest.approx(70.1)
    assert plot.panels == 1 and "no candidates recorded" in plot.notes[0]
    # without clean labels: the fraction changed per epoch, and which candidate gave the labels
    unlabelled = [dict(c, label_accuracy=None) for c in CANDIDATES]
    changed = [{"epoch": e, "changed": 0.01 * e} for e in range(1, 6)]
    plot = plot_history(_hand_made_result(unlabelled, changed), tmp_path / "changed.png")
    assert plot.series[0] == "labels changed (%) per epoch" and plot.panels == 2
    assert any("candidate 'logistic'" in note for note in plot.notes)
    decodes(plot.path)


def test_the_report_plot_ends_each_setting_at_the_labels_returned(store_dir, tmp_path):
    from dmlp_plugin.report import plot_label_accuracy

    records = [r for r in ResultStore(store_dir).records("table1") if r.get("history")][:2]
    for i, record in enumerate(records):
        record["candidates"] = [dict(c, label_accuracy=c["label_accuracy"] - 0.01 * i) for c in CANDIDATES]
        record["metrics"]["label_accuracy"] = 0.756 - 0.01 * i
    plot = plot_label_accuracy(records, tmp_path / "acc.png")
    ax = plot.figure.axes[0]
    for record in records:
        (line,) = [ln for ln in ax.get_lines() if ln.get_label().endswith(record["series"])]
        epochs = len(record["history"])
        assert line.get_xdata()[-1] == epochs + 1
        assert line.get_ydata()[-1] == pytest.approx(100 * record["metrics"]["label_accuracy"])
    circles = [ln for ln in ax.get_lines() if ln.get_label() == "candidates scored after the loop"]
    assert sorted(circles[1].get_ydata()) == pytest.approx([68.0, 73.1, 74.6])
    assert "labels returned (the chosen candidate)" in plot.series and "given labels" in plot.series
    decodes(plot.path)


def test_plot_history_without_clean_labels_falls_back(tmp_path):
    history = [{"epoch": 1, "changed": 0.1, "eac_mixed": False}, {"epoch": 2, "changed": 0.2, "eac_mixed": True}]
    plot = plot_history(history, tmp_path / "c.png")
    assert plot.series == ["labels changed (%) per epoch", "EAC mixed the head's predictions in"]
    assert "no label accuracy" in plot.notes[0]
    decodes(plot.path)
    loss_only = plot_history([{"epoch": 1, "trusted_nll": 0.9}], tmp_path / "l.png")
    assert loss_only.series == ["trusted-set log-loss per epoch"]
    with pytest.raises(InputError, match="no per-epoch history"):
        plot_history([], tmp_path / "e.png")


def test_write_report(store_dir, tmp_path):
    report = write_report(store_dir, tmp_path / "out")
    names = {p.path.name: p for p in report.plots}
    assert set(names) == {"table1_label_accuracy.png", "table1_confusion.png", "table1_methods.png",
                          "table7_label_accuracy.png", "table7_confusion.png", "table7_trusted_size.png"}
    for plot in report.plots:
        decodes(plot.path)
    # table1: a line per DMLP cell (4 noise settings x default and paper mode), the baseline has none
    acc = names["table1_label_accuracy.png"]
    settings = [s for s in acc.series if " / " in s]
    assert acc.panels == 4 and len(settings) == 8
    assert not any("Classifier" in s for s in acc.series)
    assert {"labels returned (the chosen candidate)", "given labels"} <= set(acc.series)
    # confusion of the headline cells only: the default at each noise rate
    assert names["table1_confusion.png"].series == [f"sym {r}% / DMLP-Naive (default)" for r in (20, 50, 80, 90)]
    assert names["table1_methods.png"].series == ["Classifier (given labels)", "DMLP-Naive (default)",
                                                  "DMLP-Naive (paper mode)"]
    # table7: 4 panels (mode x rate) of 6 trusted sizes; the size plot has a line per panel
    assert names["table7_label_accuracy.png"].panels == 4
    assert len([s for s in names["table7_label_accuracy.png"].series if " / " in s]) == 24
    assert names["table7_trusted_size.png"].series == ["default, sym 50%", "default, sym 80%", "paper, sym 50%",
                                                       "paper, sym 80%"]
    assert names["table7_confusion.png"].series == ["default, sym 50% / 1000 trusted",
                                                    "default, sym 80% / 1000 trusted"]
    text = report.path.read_text()
    assert "| sym 90% | DMLP-Naive (default) |" in text and "| 92.00 |" in text  # beside the paper's figure
    assert "![classifier vs DMLP](table1_methods.png)" in text and "65.9%" in text
    assert any("downstream_test_accuracy" in n for n in report.notes) and "downstream.png" not in text


def test_downstream_plot_when_cells_carry_it(store_dir, tmp_path):
    store = ResultStore(store_dir)
    records = store.records("table1")
    for i, record in enumerate(records[:6]):  # as a downstream run would add it to its cells
        record["metrics"]["downstream_test_accuracy"] = 0.5 + 0.01 * i
    plot = plot_downstream(records, tmp_path / "d.png")
    assert plot is not None and plot.series == ["Classifier (given labels)", "DMLP-Naive (default)",
                                                "DMLP-Naive (paper mode)"]
    decodes(plot.path)
    assert plot_downstream(store.records("table7"), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_confusion_rows_are_given_labels_columns_purified(store_dir, tmp_path):
    from dmlp_plugin.reproduce import draw_trusted, noisy_labels

    inputs = synthetic_inputs()
    for record in ResultStore(store_dir).records("table1"):
        s = record["settings"]
        counts = np.asarray(record["confusion_given_purified"])
        mask = np.ones(len(inputs.clean), bool)
        mask[draw_trusted(len(mask), s["num_trusted"], s["seed"])] = False
        given = noisy_labels(inputs.clean, "symmetric", s["rate"], s["seed"])[mask]
        assert counts.sum(1).tolist() == np.bincount(given, minlength=10).tolist()
        assert counts.sum() - np.trace(counts) == record["metrics"]["changed"]
    plot = plot_confusion([record], tmp_path / "one.png", which="clean")
    assert plot.panels == 1
    decodes(plot.path)
    with pytest.raises(InputError, match="which"):
        plot_confusion([record], tmp_path / "x.png", which="noisy")


def test_smoke_cells_are_reported_only_without_real_ones(store_dir, tmp_path):
    store = ResultStore(store_dir)
    smoke = dict(store.records("table1")[0], smoke=True, key="smoke_x", cell_id="smoke_x_00000000")
    smoke_dir = tmp_path / "mixed"
    mixed = ResultStore(smoke_dir)
    mixed.save(smoke)
    text = write_report(smoke_dir).path.read_text()
    assert "(smoke run)" in text and "**Smoke cells only**" in text
    section = results_section(smoke_dir, "<!-- a -->", "<!-- b -->")
    assert "Table 1" not in section  # RESULTS.md never shows smoke numbers
    full = results_section(store_dir, "<!-- a -->", "<!-- b -->")
    assert full.startswith("<!-- a -->") and full.endswith("<!-- b -->") and "### Table 1" in full


def test_cli_report(store_dir, tmp_path, capsys):
    small = ResultStore(tmp_path / "small")
    for record in ResultStore(store_dir).records("table1")[:3]:  # sym 20%: classifier, default, paper mode
        small.save(record)
    assert main(["report", str(small.root)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 plot(s): table1_label_accuracy.png, table1_confusion.png, table1_methods.png" in out
    assert "note: downstream test accuracy" in out
    assert (small.root / "report" / "report.md").is_file()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no results in" in capsys.readouterr().err


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys, store_dir):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'dmlp-plugin\[plot\]'"):
        plot_history([{"epoch": 1, "label_accuracy": 0.5}], tmp_path / "x.png")
    assert main(["report", str(store_dir), "-o", str(tmp_path / "r")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "pip install 'dmlp-plugin[plot]'" in err and "Traceback" not in err


def test_write_report_on_an_empty_store(tmp_path):
    with pytest.raises(MissingFileError, match="dmlp reproduce"):
        write_report(tmp_path)


def test_a_table8_store_is_reported_under_its_title_and_caption(tmp_path):
    """Table 8's spec lives with its runner (its cells depend on the sources given), not in
    TABLES: the report must still name it and give its caption."""
    from dmlp_plugin.reproduce.feature_tables import TABLE8, run_table8

    inputs = synthetic_inputs(600)
    source = tmp_path / "other.npz"
    np.savez(source, train=inputs.train[:, ::-1].copy(), test=inputs.test[:, ::-1].copy())
    store = ResultStore(tmp_path / "results")
    run_table8(store, {"early": source}, lambda: inputs, cifar_root=tmp_path, smoke=True, rates=(0.8,))
    report = write_report(tmp_path / "results", tmp_path / "out")
    text = report.path.read_text()
    assert f"## {TABLE8.title} (smoke run)" in text and "## table8" not in text
    assert TABLE8.measures in text and TABLE8.paper_caption in text
    # k-means first, as the run prints them, though "early" sorts before it; each by rate and mode
    rows = [line.split("|")[2].strip() for line in text.split(TABLE8.measures)[1].splitlines()
            if line.startswith("| sym")]
    assert rows == ["kmeans (default)", "kmeans (paper)", "early (default)", "early (paper)"]
    # its rows name their own features: no note that they are the k-means ones
    assert text.split(TABLE8.paper_caption)[1].split("\n")[0] == ""
