"""``dmlp report``: plots and a Markdown summary of a ``dmlp reproduce`` results store."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MissingFileError
from ..io import atomic_write
from ..reproduce.render import FEATURE_NOTE, latest_records, markdown_table, table_rows
from ..reproduce.feature_tables import TABLE8, table8_cells
from ..reproduce.store import ResultStore
from ..reproduce.tables import TABLES
from .plots import Plot, plot_confusion, plot_downstream, plot_label_accuracy, plot_methods, plot_trusted_size

__all__ = ["Report", "select_records", "write_report", "table_markdown", "results_section"]

#: Every CPU table a store can hold, in report order: Table 8's spec lives with its runner,
#: because its cells depend on the feature sources given.
SPECS = {**TABLES, TABLE8.name: TABLE8}


@dataclass
class Report:
    """What :func:`write_report` wrote: the Markdown summary, the plots, and notes on what
    was skipped and why."""

    path: Path
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


def select_records(store: ResultStore, table: str) -> tuple[list[dict[str, Any]], bool]:
    """The records of ``table`` a report shows, and whether they are smoke cells.

    One record per setting and seed (the newest); real cells when there are any, else the
    smoke cells, so a store holding both reports the real numbers.
    """
    records = latest_records(store.records(table))
    real = [r for r in records if not r.get("smoke")]
    chosen = real or records
    order = _cell_order(table, chosen)
    return sorted(chosen, key=order), not real and bool(records)


def _cell_order(table: str, records: list[dict[str, Any]]):
    """Sort key: the table definition's cell order, unknown cells after, by id."""
    spec = SPECS.get(table)
    keys: dict[str, int] = {}
    if spec is TABLE8:  # its cells are the sources the store holds: k-means first, as the run
        sources = sorted({str(r.get("settings", {}).get("source", "")) for r in records}, key=lambda s: s != "kmeans")
        cells = [cell for _, cell in table8_cells(sources)]
    else:
        cells = spec.cells([0]) if spec is not None else []
    for i, cell in enumerate(cells):
        keys.setdefault(cell.key, i)
    return lambda r: (keys.get(str(r.get("key", "")).removeprefix("smoke_"), len(keys)), int(r.get("seed", 0)),
                      r["cell_id"])


def _protocol_line(records: list[dict[str, Any]]) -> str:
    first = records[0]
    protocol = first.get("settings", {}).get("protocol", {})
    seeds = sorted({int(r.get("seed", 0)) for r in records})
    gits = sorted({r.get("code", {}).get("git", "unknown") for r in records})
    wall = sum(float(r.get("total_s") or 0.0) for r in records)
    configs = [r["config"] for r in records if r.get("config")]
    epochs = protocol.get("epochs") or (configs[0].get("epochs") if configs else None) or "the config's"
    return (f"{first.get('num_train', '?'):,} training rows, {first.get('num_test', '?'):,} test rows, "
            f"{epochs} epochs, {protocol.get('probe_iters', '?')} L-BFGS iterations for the linear classifier, "
            f"seed(s) {', '.join(map(str, seeds))}; dmlp-plugin {first.get('code', {}).get('dmlp_plugin', '?')} "
            f"at `{'`, `'.join(gits)}`; {len(records)} cells, {wall / 60:.1f} min of wall time in all.")


def table_markdown(table: str, records: list[dict[str, Any]], *, smoke: bool = False, level: int = 2,
                   images: dict[str, str] | None = None) -> list[str]:
    """Markdown lines for one table: heading, what it measures, the rows beside the
    paper's, the paper's caption and the feature gap, then ``images`` (alt text -> link)."""
    spec = SPECS.get(table)
    title = spec.title if spec is not None else table
    lines = [f"{'#' * level} {title}{' (smoke run)' if smoke else ''}", ""]
    if spec is not None:
        lines += [spec.measures, ""]
    if smoke:
        lines += ["**Smoke cells only**: tiny subsets and a few epochs, to check the pipeline; the numbers "
                  "mean nothing. Run the table without `--smoke` for real ones.", ""]
    head, body = table_rows(table, records)
    lines += [*markdown_table(head, body), ""]
    if spec is not None:
        lines += [spec.paper_caption if spec.rows_name_features else f"{spec.paper_caption} {FEATURE_NOTE}", ""]
    lines += [_protocol_line(records), ""]
    warned = sorted({w for r in records for w in r.get("warnings") or []})
    if warned:
        lines += ["Warnings raised while purifying: " + "; ".join(warned) + ".", ""]
    for alt, link in (images or {}).items():
        lines += [f"![{alt}]({link})", ""]
    return lines


def write_report(results_dir: str | Path, out_dir: str | Path | None = None) -> Report:
    """Write PNG plots and ``report.md`` for every table in the store ``results_dir``.

    Per table: purified-label accuracy per epoch (``<table>_label_accuracy.png``), the
    confusion of given vs purified labels of the headline setting (``<table>_confusion.png``,
    our default), and where they apply the classifier vs DMLP bars
    (``<table>_methods.png``) and accuracy by trusted-set size (``<table>_trusted_size.png``).
    Across tables: downstream test accuracy (``downstream.png``) when some cell carries a
    ``downstream_test_accuracy`` metric; otherwise a note says why it is missing.

    Parameters
    ----------
    results_dir : path
        The store written by ``dmlp reproduce``.
    out_dir : path, optional
        Where the report goes (default: ``results_dir/report``).

    Raises
    ------
    MissingFileError
        When the store holds no cells.
    MissingExtraError
        When matplotlib is not installed (``pip install 'dmlp-plugin[plot]'``).
    """
    store = ResultStore(results_dir)
    names = store.tables()
    if not names:
        raise MissingFileError(f"no results in {store.root}: run `dmlp reproduce TABLE --results-dir "
                               f"{store.root}` first")
    out = Path(out_dir) if out_dir is not None else store.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / "report.md")
    known = [n for n in SPECS if n in names] + [n for n in names if n not in SPECS]
    sections: list[str] = []
    everything: list[dict[str, Any]] = []
    for name in known:
        records, smoke = select_records(store, name)
        if not records:
            continue
        everything += records
        report.tables.append(name)
        images = {}
        for alt, plot in _table_plots(name, records, out, smoke, report.notes):
            report.plots.append(plot)
            images[alt] = plot.path.name
        sections += table_markdown(name, records, smoke=smoke, images=images)
    downstream = plot_downstream(everything, out / "downstream.png")
    if downstream is not None:
        report.plots.append(downstream)
        sections += ["## Downstream test accuracy", "", f"![downstream test accuracy]({downstream.path.name})", ""]
    else:
        report.notes.append("downstream test accuracy: no cell carries a `downstream_test_accuracy` metric (an "
                            "LNL method trained on the purified labels), so there is no downstream plot")
    for path, why in store.unreadable:
        report.notes.append(f"skipped unreadable file {path}: {why}")
    head = ["# DMLP reproduction report", "",
            f"From the results store `{store.root}`, written "
            f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}. Accuracies are in %. \"given\" is the "
            "accuracy of the noisy labels on the non-trusted rows, \"purified\" that of DMLP's labels on the "
            "same rows, \"linear test\" that of a linear classifier trained on the labels and scored on the "
            "CIFAR-10 test set, \"paper\" the paper's figure for the same setting.", ""]
    if report.notes:
        head += ["Notes:", "", *[f"- {note}" for note in report.notes], ""]
    with atomic_write(report.path, "w") as fh:
        fh.write("\n".join(head + sections).rstrip() + "\n")
    return report


def _table_plots(name: str, records: list[dict[str, Any]], out: Path, smoke: bool,
                 notes: list[str]) -> list[tuple[str, Plot]]:
    spec = SPECS.get(name)
    title = (spec.title if spec is not None else name) + (" (smoke)" if smoke else "")
    plots: list[tuple[str, Plot]] = []
    if any(r.get("history") for r in records):
        plots.append(("purified-label accuracy per epoch",
                      plot_label_accuracy(records, out / f"{name}_label_accuracy.png", title=title)))
    else:
        notes.append(f"{name}: no cell has a per-epoch history; no label-accuracy plot")
    headline = [r for r in records if r.get("confusion_given_purified") and int(r.get("seed", 0)) == _first_seed(records)
                and (spec is None or spec.headline(r.get("settings", {})))]
    if headline:
        plots.append(("given vs purified labels",
                      plot_confusion(headline, out / f"{name}_confusion.png",
                                     title=f"{name}: given vs purified labels, non-trusted rows"
                                     + (" (smoke)" if smoke else ""))))
    methods = plot_methods(records, out / f"{name}_methods.png", title=title)
    if methods is not None:
        plots.append(("classifier vs DMLP", methods))
    if len({r.get("settings", {}).get("nominal_trusted") for r in records}) > 2:
        plots.append(("accuracy by trusted-set size",
                      plot_trusted_size(records, out / f"{name}_trusted_size.png", title=title)))
    return plots


def _first_seed(records: list[dict[str, Any]]) -> int:
    return min(int(r.get("seed", 0)) for r in records)


def results_section(results_dir: str | Path, start: str, end: str, *, command: str = "",
                    images: dict[str, dict[str, str]] | None = None, preface: str = "") -> str:
    """A ``RESULTS.md`` section (between ``start`` and ``end``) of the store's real tables.

    ``images`` maps a table to its ``{alt: link}`` images; ``preface`` is Markdown put
    after the heading (e.g. how the run was made).
    """
    store = ResultStore(results_dir)
    lines = [start, "## Paper tables on CIFAR-10 features (`dmlp reproduce`)", ""]
    if preface:
        lines += [preface, ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    for name in [n for n in SPECS if n in store.tables()]:
        records, smoke = select_records(store, name)
        if records and not smoke:
            lines += table_markdown(name, records, level=3, images=(images or {}).get(name))
    lines.append(end)
    return "\n".join(lines)
