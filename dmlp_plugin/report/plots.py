"""PNG plots of purification runs and of ``dmlp reproduce`` results (needs matplotlib).

Each function draws one figure, saves it, and returns a :class:`Plot` naming the series it
drew, so callers (and tests) know what is in the picture without decoding it. Figures are
built with :class:`matplotlib.figure.Figure` directly, never through pyplot: no global
state, no display backend, nothing left open.

Install the extra with ``pip install 'dmlp-plugin[plot]'``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InputError, MissingExtraError

__all__ = [
    "MissingExtraError", "require_matplotlib", "Plot", "plot_history", "plot_label_accuracy", "plot_confusion",
    "plot_methods", "plot_trusted_size", "plot_downstream", "history_metric",
]

PLOT_EXTRA_HINT = "pip install 'dmlp-plugin[plot]'"


def require_matplotlib() -> None:
    """Raise :class:`MissingExtraError` now, before any work, when plots cannot be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtraError(f"plots need matplotlib, which is not installed: {PLOT_EXTRA_HINT}")


@dataclass
class Plot:
    """A saved figure: where, and what it shows.

    ``series`` are the labels of the lines, bar groups or heatmaps drawn, in order and
    without repeats, read back from the figure's artists before it was saved; ``panels``
    the number of axes with data; ``figure`` the matplotlib figure saved, to read the
    plotted data back from.
    """

    path: Path
    series: list[str]
    panels: int = 1
    notes: list[str] = field(default_factory=list)
    figure: Any = field(default=None, repr=False, compare=False)


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError(f"plots need matplotlib, which is not installed: {PLOT_EXTRA_HINT}") from None
    return Figure(figsize=(width, height), layout="constrained")


def _integer_epochs(ax) -> None:
    # Imported here, like Figure: matplotlib is optional, and this module must import without it.
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _drawn(fig) -> tuple[list[str], int]:
    """The labelled series on the figure, read back from its artists (lines, bar groups,
    heatmaps by their axes' label), without repeats, and how many axes hold data. Read
    from the figure itself so that what a :class:`Plot` claims is what was drawn."""
    labels: list[str] = []
    panels = 0
    for ax in fig.axes:
        if not (ax.get_lines() or ax.containers or ax.images):
            continue  # a colorbar
        panels += 1
        found = [line.get_label() for line in ax.get_lines()]
        found += [c.get_label() for c in ax.containers]
        found += [ax.get_label() for _ in ax.images]
        labels += [x for x in found if x and not x.startswith("_") and x not in labels]
    return labels, panels


def _plot(fig, path: str | Path, notes: list[str] | None = None) -> Plot:
    series, panels = _drawn(fig)
    return Plot(_save(fig, path), series, panels, notes or [], fig)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


# What a history can show, best first: (key, axis label, as a percentage?).
_HISTORY_METRICS = (
    ("label_accuracy", "label accuracy (%)", True),
    ("changed", "labels changed (%)", True),
    ("trusted_nll", "trusted-set log-loss", False),
    ("ipc_loss", "IPC loss", False),
)


def history_metric(history: Sequence[dict[str, Any]]) -> tuple[str, str, bool] | None:
    """The metric :func:`plot_history` draws for ``history``: label accuracy when the run
    had clean labels, else the fraction of labels changed (``changed``), else a loss;
    ``None`` if none."""
    for key, label, pct in _HISTORY_METRICS:
        if any(entry.get(key) is not None for entry in history):
            return key, label, pct
    return None


def _x_of(entry: dict[str, Any], i: int) -> int:
    """Where a history record sits: its epoch (paper mode), its mixing round, or its position."""
    return int(entry.get("epoch", entry.get("round", i + 1)))


def _xy(history: Sequence[dict[str, Any]], key: str, pct: bool) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for i, entry in enumerate(history):
        value = entry.get(key)
        if value is not None:
            xs.append(_x_of(entry, i))
            ys.append(100 * float(value) if pct else float(value))
    return xs, ys


@dataclass
class _Run:
    """What a run plot shows, from a result, a ``dmlp reproduce`` record or a bare history:
    the per-epoch (or per-round) records, the candidates scored after the loop, and the
    accuracy of the labels written and of the given ones (fractions; None when unknown)."""

    history: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    written: float | None = None
    given: float | None = None
    selected: str | None = None  # a result from before candidates were recorded names its choice only


def _run_of(source: Any) -> _Run:
    if isinstance(source, dict):  # a reproduce record
        metrics = source.get("metrics") or {}
        return _Run(list(source.get("history") or []), list(source.get("candidates") or []),
                    metrics.get("label_accuracy"), metrics.get("given_label_accuracy"))
    if isinstance(source, (list, tuple)):
        return _Run(list(source), [])
    history = getattr(source, "history", None)
    if not isinstance(history, (list, tuple)):
        raise InputError("plot_history expects a PurifyResult, a list of per-epoch records or a results record")
    meta = getattr(source, "metadata", None) or {}
    return _Run(list(history), list(meta.get("candidates") or []), meta.get("label_accuracy_after"),
                meta.get("label_accuracy_before"), meta.get("selected"))


def _chosen(candidates: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    return next((c for c in candidates if c.get("selected")), None)


def plot_history(result_or_history: Any, path: str | Path, *, title: str | None = None) -> Plot:
    """Plot one purification run and save it as a PNG: per epoch (or mixing round), then
    the candidates scored after the loop and the labels written.

    Parameters
    ----------
    result_or_history : PurifyResult, list of dict, or dict
        A result (its ``history`` and ``metadata``), the history itself, or a
        ``dmlp reproduce`` record.
    path : path
        Where the PNG goes (parent folders are created).
    title : str, optional

    Draws the label accuracy when the run had clean labels (``purify_dataset(...,
    clean_labels=...)``), else the fraction of labels changed, else the trusted-set
    log-loss or the IPC loss. With label accuracy, every candidate scored after the loop
    (``metadata["candidates"]``) is a point after the last epoch, the chosen one a star,
    and a dashed segment ends the curve at the accuracy of the labels written (the
    summary's). A second panel shows each candidate's trusted-set log-loss, by which it
    was chosen. Epochs where EAC mixed are dotted lines. Every line is in a legend.
    Results from before candidates were recorded still end at the labels written.

    Raises
    ------
    InputError
        When the history is empty or holds none of those metrics.
    MissingExtraError
        When matplotlib is not installed.
    """
    run = _run_of(result_or_history)
    chosen = history_metric(run.history)
    if chosen is None:
        raise InputError("the run has no per-epoch history to plot (a result made with on_epoch-free "
                         "internal calls, or an empty history)")
    key, label, pct = chosen
    scored = [c for c in run.candidates if c.get("trusted_nll") is not None]
    fig = _figure(10.0 if scored else 6.0, 3.8)
    ax = fig.add_subplot(1, 2, 1) if scored else fig.add_subplot()
    notes = [] if key == "label_accuracy" else [f"no label accuracy in the history; showing {label}"]
    xs, ys = _draw_history(ax, run.history, key, label, pct)
    if key == "label_accuracy":
        notes += _draw_after_the_loop(ax, run, xs, ys[-1])
    elif _chosen(run.candidates) or run.selected:
        name = (_chosen(run.candidates) or {}).get("name") or run.selected
        notes.append(f"the labels written come from candidate {name!r}, chosen after the loop")
    if scored:
        _draw_selection(fig.add_subplot(1, 2, 2), scored)
    ax.legend(fontsize=7, frameon=False, loc="best")
    ax.set_title(title or f"purification: {label}", fontsize=10)
    return _plot(fig, path, notes)


def _draw_history(ax, history: list[dict[str, Any]], key: str, label: str, pct: bool
                  ) -> tuple[list[int], list[float]]:
    """The per-epoch curve and the EAC mixing epochs; returns the curve's points."""
    xs, ys = _xy(history, key, pct)
    unit = "epoch" if any("epoch" in e for e in history) else "mixing round" if any("round" in e for e in history) \
        else "step"
    ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=f"{label} per {unit}", color="C0")
    mixed = [e.get("epoch", 0) for e in history if e.get("eac_mixed")]
    for i, x in enumerate(mixed):
        ax.axvline(x, color="0.75", linestyle=":", linewidth=1, zorder=0,
                   label="EAC mixed the head's predictions in" if i == 0 else "_nolegend_")
    ax.set_xlabel(unit)
    _integer_epochs(ax)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    return xs, ys


def _draw_after_the_loop(ax, run: _Run, xs: list[int], last_y: float) -> list[str]:
    """Candidates' label accuracy one step after the last epoch, the chosen one starred,
    and the segment from the last epoch to the labels written. Returns notes on what
    could not be drawn."""
    last = xs[-1]
    after = last + 1
    notes: list[str] = []
    known = [c for c in run.candidates if c.get("label_accuracy") is not None]
    if known:
        ax.plot([after] * len(known), [100 * float(c["label_accuracy"]) for c in known], linestyle="none",
                marker="o", markersize=5, markerfacecolor="none", color="C1",
                label="candidates scored after the loop")
        if not any(c.get("trusted_nll") is not None for c in known):  # else the selection panel names them
            for c in known:
                ax.annotate(str(c.get("name", "")), (after, 100 * float(c["label_accuracy"])), xytext=(6, 0),
                            textcoords="offset points", fontsize=6, va="center")
    best = _chosen(run.candidates)
    if best is not None and best.get("label_accuracy") is not None:
        ax.plot([after], [100 * float(best["label_accuracy"])], linestyle="none", marker="*", markersize=11,
                color="C3", label=f"chosen: {best.get('name', '?')}")
    written = run.written
    if written is None and best is not None:
        written = best.get("label_accuracy")
    if written is None:
        notes.append("the accuracy of the labels written is unknown (no clean labels after the loop)")
    else:
        ax.plot([last, after], [last_y, 100 * float(written)], linestyle="--", color="C3", linewidth=1.2,
                label=f"labels written: {100 * float(written):.1f}%")
    if run.given is not None:
        ax.axhline(100 * float(run.given), color="0.5", linestyle="--", linewidth=1,
                   label=f"given labels: {100 * float(run.given):.1f}%")
    if not run.candidates:
        notes.append("no candidates recorded (paper mode, or a result from before they were): "
                     "the labels written follow the last epoch")
    # The step after the loop is not an epoch: its tick says what it is.
    ticks = [t for t in ax.get_xticks() if xs[0] <= t <= last]
    ax.set_xticks(ticks + [after], [f"{t:g}" for t in ticks] + ["chosen"])
    ax.set_xlim(right=after + 0.8)
    return notes


def _draw_selection(ax, candidates: list[dict[str, Any]]) -> None:
    """Each candidate's cross-fitted trusted-set log-loss (the selection criterion), the
    chosen one in red."""
    names = [str(c.get("name", i)) for i, c in enumerate(candidates)]
    values = [float(c["trusted_nll"]) for c in candidates]
    colours = ["C3" if c.get("selected") else "C1" for c in candidates]
    bars = ax.barh(range(len(names)), values, color=colours, label="trusted-set log-loss (chosen: red)")
    for bar, c in zip(bars, candidates):
        acc = c.get("label_accuracy")
        ax.annotate(f"{bar.get_width():.3f}" + (f"  ({100 * float(acc):.1f}% correct)" if acc is not None else ""),
                    (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(2, 0),
                    textcoords="offset points", fontsize=6, va="center")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.5 * max(values + [1e-9]))  # room for the annotations
    ax.set_xlabel("cross-fitted trusted-set log-loss (lower wins)")
    ax.set_title("the choice after the loop (red: chosen)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def _panels(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        out.setdefault(record.get("panel", ""), []).append(record)
    return out


def _mean_curve(group: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Epoch-wise mean over seeds of a history metric (epochs every seed has)."""
    curves = [dict(zip(*_xy(r.get("history") or [], key, True))) for r in group]
    epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return epochs, [float(np.mean([c[e] for c in curves])) for e in epochs]


def plot_label_accuracy(records: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Plot:
    """Purified-label accuracy per epoch: one panel per noise setting (``panel``), one line
    per setting within it (``series``, seeds averaged). Cells without a history (the
    classifier baseline) are left out; the given labels' accuracy is a dashed grey line.

    After the last epoch each line takes one more step, to the accuracy of the labels
    returned (a diamond): the default chooses among its candidates after the loop, so it
    can differ from the last epoch's. Where the cells recorded their candidates, each
    candidate's accuracy is a hollow circle on that step."""
    panels = {name: rs for name, rs in _panels(records).items()
              if any(history_metric(r.get("history") or []) for r in rs)}
    if not panels:
        raise InputError("no cell has a per-epoch history to plot")
    rows, cols = _grid(len(panels), max_cols=2)
    fig = _figure(5.0 * cols, 3.2 * rows + 0.8)
    handles: dict[str, Any] = {}
    for i, (panel, rs) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        by_series: dict[str, list[dict[str, Any]]] = {}
        for r in rs:
            if r.get("history"):
                by_series.setdefault(r.get("series", ""), []).append(r)
        for j, (series, group) in enumerate(by_series.items()):
            line = _series_line(ax, panel, series, group, f"C{j % 10}", handles)
            if line is not None:
                handles.setdefault(series, line)
        given = [r["metrics"]["given_label_accuracy"] for r in rs
                 if r["metrics"].get("given_label_accuracy") is not None]
        if given:
            handles["given labels"] = ax.axhline(100 * float(np.mean(given)), color="0.5", linestyle="--",
                                                 linewidth=1, label="given labels")
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("epoch (then: the labels returned)")
        _integer_epochs(ax)
        ax.set_ylabel("purified-label accuracy (%)")
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 4),
               fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _plot(fig, path)


def _series_line(ax, panel: str, series: str, group: list[dict[str, Any]], colour: str,
                 handles: dict[str, Any]) -> Any:
    """One setting's mean curve, ending one step after the loop at the labels returned, with
    its candidates there; ``None`` when the cells have no label accuracy per epoch."""
    xs, ys = _mean_curve(group, "label_accuracy")
    if not xs:
        return None
    final = [r["metrics"].get("label_accuracy") for r in group]
    returned = 100 * float(np.mean(final)) if all(v is not None for v in final) else None
    if returned is not None:
        xs, ys = xs + [xs[-1] + 1], ys + [returned]
    (line,) = ax.plot(xs, ys, color=colour, linewidth=1.4, label=f"{panel} / {series}")
    if returned is None:
        return line
    (diamond,) = ax.plot([xs[-1]], [returned], marker="D", markersize=5, color=colour, linestyle="none",
                         label="labels returned (the chosen candidate)")
    handles.setdefault(diamond.get_label(), diamond)
    by_name: dict[str, list[float]] = {}
    for r in group:
        for c in r.get("candidates") or []:
            if c.get("label_accuracy") is not None:
                by_name.setdefault(str(c.get("name")), []).append(100 * float(c["label_accuracy"]))
    if by_name:
        (points,) = ax.plot([xs[-1]] * len(by_name), [float(np.mean(v)) for v in by_name.values()],
                            marker="o", markersize=4, markerfacecolor="none", color=colour, linestyle="none",
                            label="candidates scored after the loop")
        handles.setdefault("candidates scored after the loop", points)
    return line


def plot_confusion(records: Sequence[dict[str, Any]], path: str | Path, *, title: str = "",
                   which: str = "given") -> Plot:
    """One heatmap per record of the confusion between labels on the non-trusted rows:
    ``which="given"``: given (rows) vs purified (columns); ``"clean"``: clean vs purified.
    Each row is normalised to percentages of its label, so the diagonal reads as "kept"
    (given) or "correct" (clean)."""
    key = {"given": "confusion_given_purified", "clean": "confusion_clean_purified"}.get(which)
    if key is None:
        raise InputError(f"which must be 'given' or 'clean', got {which!r}")
    records = [r for r in records if r.get(key)]
    if not records:
        raise InputError(f"no record carries {key}")
    rows, cols = _grid(len(records))
    fig = _figure(3.4 * cols + 0.8, 3.6 * rows + 0.8)
    image = None
    for i, record in enumerate(records):
        counts = np.asarray(record[key], dtype=float)
        share = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ax = fig.add_subplot(rows, cols, i + 1)
        image = ax.imshow(share, cmap="viridis", vmin=0, vmax=100)
        kept = float(np.trace(counts) / max(counts.sum(), 1))
        label = f"{record.get('panel', '')} / {record.get('series', '')}"
        ax.set_label(label)
        ax.set_title(f"{label}\n{'kept' if which == 'given' else 'correct'} {100 * kept:.1f}%", fontsize=9)
        ax.set_xlabel("purified label")
        ax.set_ylabel("given label" if which == "given" else "clean label")
        ticks = range(counts.shape[0])
        ax.set_xticks(list(ticks))
        ax.set_yticks(list(ticks))
        ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="% of the row's label")
    if title:
        fig.suptitle(title, fontsize=11)
    return _plot(fig, path)


def _bars(ax, groups: list[str], series: list[str], values: dict[tuple[str, str], float]) -> None:
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for j, name in enumerate(series):
        ys = [values.get((g, name), np.nan) for g in groups]
        bars = ax.bar(x + (j - (len(series) - 1) / 2) * width, ys, width, label=name, color=f"C{j % 10}")
        for bar, y in zip(bars, ys):
            if y == y:  # not NaN
                ax.annotate(f"{y:.1f}", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom",
                            fontsize=6, xytext=(0, 1), textcoords="offset points")
    ax.set_xticks(x, groups)
    ax.grid(axis="y", alpha=0.3)


def _mean_metric(records: list[dict[str, Any]], group_key: str, metric: str) -> tuple[
        list[str], list[str], dict[tuple[str, str], float]]:
    groups, series, sums = [], [], {}
    for r in records:
        value = r["metrics"].get(metric)
        if value is None:
            continue
        g, s = r.get(group_key, ""), r.get("series", "")
        groups += [g] if g not in groups else []
        series += [s] if s not in series else []
        # Metrics are fractions; a value above 1 was written as a percentage already.
        sums.setdefault((g, s), []).append(float(value) if float(value) > 1.0 else 100 * float(value))
    return groups, series, {k: float(np.mean(v)) for k, v in sums.items()}


def plot_methods(records: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Plot | None:
    """Bars of linear test accuracy, method vs DMLP-method: for every noise setting
    (``panel``) that holds a classifier-baseline cell, that baseline and each DMLP cell
    beside it. ``None`` (nothing saved) when no setting has a baseline."""
    panels = [p for p, rs in _panels(records).items() if any(r.get("method") == "classifier" for r in rs)]
    chosen = [r for r in records if r.get("panel", "") in panels]
    return _bar_plot(chosen, "linear_test_accuracy", path, ylabel="linear test accuracy (%)",
                     title=title or "classifier on the given labels vs on DMLP's purified labels",
                     legend_loc="upper right")


def plot_trusted_size(records: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Plot:
    """Purified-label accuracy (left) and linear test accuracy (right) against the
    trusted-set size, one line per noise setting (``panel``), seeds averaged."""
    by_panel: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in records:
        n = int(r.get("settings", {}).get("nominal_trusted") or r.get("num_trusted") or 0)
        by_panel.setdefault(r.get("panel", ""), {}).setdefault(n, []).append(r)
    if not by_panel:
        raise InputError("no records to plot")
    fig = _figure(10.0, 3.8)
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    for j, (panel, sizes) in enumerate(by_panel.items()):
        xs = sorted(sizes)
        for ax, metric in zip(axes, ("label_accuracy", "linear_test_accuracy")):
            ys = [100 * float(np.mean([r["metrics"].get(metric) or np.nan for r in sizes[n]])) for n in xs]
            ax.plot(xs, ys, marker="o", color=f"C{j % 10}", linestyle="-" if "default" in panel else "--",
                    label=panel)
    for ax, label in zip(axes, ("purified-label accuracy (%)", "linear test accuracy (%)")):
        ax.set_xscale("log")
        ax.set_xlabel("trusted samples")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return _plot(fig, path)


def plot_downstream(records: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Plot | None:
    """Bars of the ``downstream_test_accuracy`` metric (an LNL method trained on the
    purified labels), grouped by noise setting; ``None`` (nothing saved) when no record
    carries it."""
    return _bar_plot(list(records), "downstream_test_accuracy", path, ylabel="downstream test accuracy (%)",
                     title=title or "downstream test accuracy on the purified labels")


def _bar_plot(records: list[dict[str, Any]], metric: str, path: str | Path, *, ylabel: str, title: str,
              legend_loc: str = "best") -> Plot | None:
    """Grouped bars of ``metric`` (seeds averaged): a group per noise setting, a bar per
    series. ``None`` (nothing saved) when no record carries the metric."""
    groups, series, values = _mean_metric(records, "panel", metric)
    if not values:
        return None
    fig = _figure(max(6.0, 1.6 * len(groups) + 2), 3.8)
    ax = fig.add_subplot()
    _bars(ax, groups, series, values)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, frameon=False, loc=legend_loc)
    ax.set_title(title, fontsize=10)
    return _plot(fig, path)
