"""The suite's tables, from the cached runs: per feature set and overall, each method's mean
label accuracy, mean rank, mean gap to the best peer and worst gap to the given labels;
per setting; costs; and what each candidate family adds (``python benchmarks/suite.py report``)."""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

import suite_data as data
import suite_methods as methods
from driver import RESULTS, Section, command_line, git_revision, markdown_table, timestamp
from suite_data import cells_of
from suite_methods import load

SECTION = Section("suite")
NETWORK_SECTION = Section("suite-network")
ESTIMATES_SECTION = Section("suite-estimates")

#: How the report names the methods.
TITLES = {"given": "given labels", "dmlp-nonet": "default", "dmlp": "default + network", "paper": "paper mode",
          "fc-logistic": "fc-logistic", "cleanlab": "cleanlab", "knn": "kNN vote"}


def collect(args: argparse.Namespace) -> tuple[list[data.Cell], dict]:
    """``{cell key: {method: accuracy}}`` for the cells where every asked method has a result."""
    digests = {m: methods.method_digest(m) for m in args.methods}
    table, runs = {}, {}
    for cell in cells_of(args):
        row = {}
        for m in args.methods:
            out = load(m, cell, digests[m])
            if out is not None:
                row[m] = out["label_acc"]
                runs[(m, cell.key)] = out
        if row:
            row["given"] = _given_accuracy(cell)
            table[cell.key] = row
    cells = [c for c in cells_of(args) if c.key in table]
    return cells, {"acc": table, "runs": runs}


def _given_accuracy(cell: data.Cell) -> float:
    _, noisy, trusted, clean = data.cell_inputs(cell)
    keep = np.ones(len(clean), bool)
    keep[trusted] = False
    return float((noisy[keep] == clean[keep]).mean())


def summary(cells: list[data.Cell], acc: dict, names: list[str]) -> list[list[str]]:
    """Rows: method, mean accuracy, mean rank, mean gap to the best peer, worst gap to the given labels."""
    rows = []
    complete = [c for c in cells if all(m in acc[c.key] for m in names)]
    if not complete:
        return rows
    ranks = defaultdict(list)
    for c in complete:
        values = {m: acc[c.key][m] for m in names}
        order = sorted(values, key=lambda m: -values[m])
        for m in names:  # ties share the better rank
            ranks[m].append(1 + sum(values[o] > values[m] + 1e-12 for o in order))
    for m in names:
        accs = np.array([acc[c.key][m] for c in complete])
        peers = [p for p in methods.PEERS if p in names and p != m]
        gap = (np.mean([acc[c.key][m] - max(acc[c.key][p] for p in peers) for c in complete])
               if peers else float("nan"))
        worst = min(acc[c.key][m] - acc[c.key]["given"] for c in complete)
        rows.append([TITLES.get(m, m), f"{100 * accs.mean():.2f}", f"{np.mean(ranks[m]):.2f}",
                     f"{100 * gap:+.2f}" if gap == gap else "", f"{100 * worst:+.2f}"])
    return rows


def setting_table(cells: list[data.Cell], acc: dict, names: list[str], feature_set: str) -> list[list[str]]:
    """Per (noise, rows, trusted): each method's accuracy, averaged over the draws."""
    groups = defaultdict(list)
    for c in cells:
        if c.features == feature_set:
            groups[(c.noise, c.rows, c.trusted)].append(c)
    rows = []
    for (noise, n, t), group in sorted(groups.items(), key=lambda kv: (list(data.NOISES).index(kv[0][0]), kv[0][1],
                                                                        kv[0][2])):
        cols = [data.NOISES[noise][0], f"{n // 1000}k", str(t)]
        for m in names:
            vals = [acc[c.key][m] for c in group if m in acc[c.key]]
            cols.append(f"{100 * np.mean(vals):.1f}" if vals else "")
        rows.append(cols)
    return rows


def cost_table(cells: list[data.Cell], runs: dict, names: list[str]) -> list[list[str]]:
    """Median seconds of each method per (feature set, rows), one thread."""
    rows = []
    for fs in dict.fromkeys(c.features for c in cells):
        for n in sorted({c.rows for c in cells if c.features == fs}):
            cols = [fs, f"{n:,}"]
            for m in names:
                secs = [runs[(m, c.key)]["seconds"] for c in cells
                        if c.features == fs and c.rows == n and (m, c.key) in runs]
                cols.append(f"{np.median(secs):.1f}" if secs else "")
            rows.append(cols)
    return rows


def family_table(cells: list[data.Cell], runs: dict, method: str) -> list[list[str]]:
    """What each candidate family of ``method``'s runs adds: the mean accuracy of the
    selection with every family against without that one, and its share of the time."""
    records = [runs[(method, c.key)] for c in cells if (method, c.key) in runs
               and runs[(method, c.key)].get("candidates")]
    if not records:
        return []
    families = list(dict.fromkeys(c["family"] for r in records for c in r["candidates"]))
    rows = []
    for family in families:
        gains, ratios, chosen = [], [], 0
        for r in records:
            cands = r["candidates"]
            full = methods.select(cands)
            rest = methods.select(cands, tuple(f for f in families if f != family))
            if rest is None:
                continue
            gains.append(full["label_accuracy"] - rest["label_accuracy"])
            chosen += full["family"] == family
            timings = r["timings"]
            own = timings.get(family, 0.0)
            ratios.append(own / max(1e-9, timings["total"] - own))
        if gains:
            rows.append([family, f"{100 * np.mean(gains):+.2f}", f"{100 * min(gains):+.2f}",
                         f"{100 * max(gains):+.2f}", f"{chosen}/{len(gains)}", f"{np.median(ratios):.2f}×"])
    return rows


def behind_table(cells: list[data.Cell], acc: dict, method: str) -> list[list[str]]:
    """Per feature set and trusted size: in how many cells ``method`` is more than 0.5 points
    behind the best peer, and the largest such gap."""
    rows = []
    for fs in dict.fromkeys(c.features for c in cells):
        for t in sorted({c.trusted for c in cells if c.features == fs}):
            gaps = [acc[c.key][method] - max(acc[c.key][p] for p in methods.PEERS)
                    for c in cells if c.features == fs and c.trusted == t
                    and all(m in acc[c.key] for m in (method, *methods.PEERS))]
            if gaps:
                behind = [g for g in gaps if g < -0.005]
                rows.append([data.FEATURE_SETS[fs].title, str(t), f"{len(behind)}/{len(gaps)}",
                             f"{100 * min(gaps):+.1f}" if behind else ""])
    return rows


def trusted_size_table(cells: list[data.Cell], acc: dict, method: str) -> list[list[str]]:
    """The default's label accuracy by trusted rows per class, per feature set (mean over
    the noises, rows and draws that have every size), beside the given labels'."""
    sizes = sorted({c.trusted for c in cells})
    rows = []
    for fs in dict.fromkeys(c.features for c in cells):
        groups = defaultdict(dict)
        for c in cells:
            if c.features == fs and method in acc[c.key]:
                groups[(c.noise, c.rows, c.draw)][c.trusted] = (acc[c.key][method], acc[c.key]["given"])
        complete = [g for g in groups.values() if all(k in g for k in sizes)]
        if not complete:
            continue
        given = np.mean([g[sizes[0]][1] for g in complete])
        rows.append([data.FEATURE_SETS[fs].title, f"{100 * given:.1f}"]
                    + [f"{100 * np.mean([g[k][0] for g in complete]):.1f}" for k in sizes]
                    + [str(len(complete))])
    return [["feature set", "given"] + [f"{k}/class" for k in sizes] + ["settings"]] + rows if rows else []


def _opening(args: argparse.Namespace, cells: list[data.Cell]) -> str:
    return (f"Generated {timestamp()} at `{git_revision()}` by `{command_line('suite.py', args.argv)}` from "
            f"{len(cells)} cells (draws {args.draws}). Label accuracy (%) on the non-trusted rows.")


def report(args: argparse.Namespace) -> int:
    if args.section == "estimates":
        args.methods = [methods.ESTIMATES, "dmlp-nonet"]
    cells, found = collect(args)
    if args.section == "estimates":
        cells = [c for c in cells if (methods.ESTIMATES, c.key) in found["runs"]]
    if not cells:
        print("no results yet: python benchmarks/suite.py run ...")
        return 1
    parts, section = {"network": (network_parts, NETWORK_SECTION), "estimates": (estimates_parts, ESTIMATES_SECTION),
                      "suite": (suite_parts, SECTION)}[args.section]
    parts = parts(args, cells, found)
    text = section.wrap(parts)
    print(text)
    if args.write_results:
        section.write(text, RESULTS)
    return 0


def network_parts(args: argparse.Namespace, cells: list[data.Cell], found: dict) -> list[str]:
    """The network candidate (method ``dmlp``): what it adds to the default's selection and what
    it costs, from the cells where it ran."""
    rows = family_table(cells, found["runs"], "dmlp")
    parts = ["## Benchmark suite: the network candidate", "", _opening(args, cells) + " The default with "
             "`mlp_candidate=True`: the network's gain is the selection among every candidate minus the "
             "selection without the network (mean, worst and best cell); its cost, its time over the rest of "
             "the run's (median, one thread).", "",
             *markdown_table(["family", "mean gain", "worst", "best", "chosen", "cost"], rows), ""]
    groups = network_groups(cells, found["runs"])
    if len(groups) > 1:
        parts += ["The network by feature set, rows and trusted rows a class:", "",
                  *markdown_table(["features", "rows", "trusted/class", "cells", "mean gain", "worst", "best", "chosen",
                                   "cost"], groups), ""]
    return parts


def network_groups(cells: list[data.Cell], runs: dict) -> list[list[str]]:
    """The network family's row of :func:`family_table` per (feature set, rows, trusted size)."""
    out = []
    keys = dict.fromkeys((c.features, c.rows, c.trusted) for c in cells if ("dmlp", c.key) in runs)
    for fs, n, t in keys:
        group = [c for c in cells if (c.features, c.rows, c.trusted) == (fs, n, t)]
        row = [r for r in family_table(group, runs, "dmlp") if r[0] == "network candidate"]
        if row:
            cells_run = sum(("dmlp", c.key) in runs for c in group)
            out.append([data.FEATURE_SETS[fs].title, f"{n:,}", str(t), str(cells_run), *row[0][1:]])
    return out


def suite_parts(args: argparse.Namespace, cells: list[data.Cell], found: dict) -> list[str]:
    acc, runs = found["acc"], found["runs"]
    names = [m for m in args.methods if any(m in acc[c.key] for c in cells)] + ["given"]
    parts = ["## Benchmark suite", "", _opening(args, cells) + " Summaries count the cells where every method "
             "ran. Rank: 1 is the best method of a cell. Gap to best peer: the method minus the best of "
             "fc-logistic, cleanlab and kNN, averaged over cells. Worst vs given: the method minus the given "
             "labels in its worst cell.", ""]
    summary_names = [m for m in names if m != "dmlp"]
    for title, subset in [("All cells", cells)] + [(data.FEATURE_SETS[fs].title, [c for c in cells if c.features == fs])
                                                    for fs in dict.fromkeys(c.features for c in cells)]:
        parts += [f"### {title}", "", *markdown_table(["method", "mean acc.", "mean rank", "gap to best peer",
                                                       "worst vs given"], summary(subset, acc, summary_names)), ""]
    behind = behind_table(cells, acc, "dmlp-nonet")
    if behind:
        parts += ["### Where the default is behind the best peer", "",
                  "Cells where the default is more than 0.5 points below the best of the three peers, and the "
                  "largest gap.", "",
                  *markdown_table(["feature set", "trusted/class", "cells behind", "largest gap"], behind), ""]
    for fs in dict.fromkeys(c.features for c in cells):
        parts += [f"### Per setting: {data.FEATURE_SETS[fs].title}", "",
                  *markdown_table(["noise", "rows", "trusted/class"] + [TITLES.get(m, m) for m in names],
                                  setting_table(cells, acc, names, fs)), ""]
    rows = family_table(cells, runs, "dmlp-nonet")
    if rows:
        parts += [f"### What each candidate family adds ({TITLES['dmlp-nonet']})", "",
                  "Gain: label accuracy of the selection among every family minus the selection without this "
                  "one (mean, worst and best cell). Cost: the family's time over the rest of the run's "
                  "(median).", "",
                  *markdown_table(["family", "mean gain", "worst", "best", "chosen", "cost"], rows), ""]
    sizes = trusted_size_table(cells, acc, "dmlp-nonet")
    if sizes:
        parts += ["### The default's labels by trusted-set size", "",
                  "Mean label accuracy (%) over the settings (noise, rows, draw) that have every size; the "
                  "trusted rows are drawn at random within each clean class (docs/trusted-set.md).", "",
                  *markdown_table(sizes[0], sizes[1:]), ""]
    parts += ["### Wall time (median seconds, one thread)", "",
              *markdown_table(["features", "rows"] + [TITLES.get(m, m) for m in names if m != "given"],
                              cost_table(cells, runs, [m for m in names if m != "given"])), ""]
    return parts


def estimates_parts(args: argparse.Namespace, cells: list[data.Cell], found: dict) -> list[str]:
    """How close the default's own estimates come to the truth (method ``estimates``)."""
    runs, acc = found["runs"], found["acc"]
    groups = [("all", cells)] + [(f"{data.FEATURE_SETS[fs].title}, {t}/class",
                                  [c for c in cells if c.features == fs and c.trusted == t])
                                 for fs in dict.fromkeys(c.features for c in cells)
                                 for t in sorted({c.trusted for c in cells if c.features == fs})]
    rows = [estimate_row(title, [runs[(methods.ESTIMATES, c.key)] for c in group],
                         [acc[c.key]["given"] for c in group],
                         [runs.get(("dmlp-nonet", c.key)) for c in group]) for title, group in groups if group]
    others = [[m, *error_stats([r["noise_rate"][m] for r in (runs[(methods.ESTIMATES, c.key)] for c in cells)],
                               [1 - runs[(methods.ESTIMATES, c.key)]["label_acc"] for c in cells])]
              for m in methods.NOISE_RATE_METHODS]
    return ["## Benchmark suite: the default's estimates of its own labels", "",
            _opening(args, cells) + " The default with `estimate_accuracy=True`. Accuracy estimate: "
            "`result.accuracy_estimate` (cross-fitted over the trusted set) against the labels' accuracy on the "
            "non-trusted rows; covered: its 95% interval holds the truth; warning right: it warned that the labels "
            "look worse than the given ones exactly where they are. Residual noise: "
            "`result.estimated_noise_rate()`, what the integrations set Co-teaching's forget rate and CDR's noise "
            "rate from, against the true fraction of wrong labels. Errors in points; time: the run with the "
            "estimate over the plain default's run of the same cell (median).", "",
            *markdown_table(["cells", "n", "accuracy: mean error", "mean abs. error", "worst", "within ±3", "covered",
                             "warning right", "residual noise: mean abs. error", "worst", "time"], rows), "",
            "Each residual-noise estimator over all cells (mean error, mean abs. error, worst):", "",
            *markdown_table(["estimator", "mean error", "mean abs. error", "worst"], others), ""]


def error_stats(estimates: list, truths: list[float]) -> list[str]:
    """Mean error, mean absolute error and the worst error, in points ("—" where none applies)."""
    errors = np.array([e - t for e, t in zip(estimates, truths) if e is not None])
    if not len(errors):
        return ["—", "—", "—"]
    return [f"{100 * errors.mean():+.1f}", f"{100 * np.abs(errors).mean():.1f}",
            f"{100 * errors[np.abs(errors).argmax()]:+.1f}"]


def estimate_row(title: str, records: list[dict], given: list[float], plain: list[dict | None]) -> list[str]:
    truth = np.array([r["label_acc"] for r in records])
    est = [r["accuracy_estimate"] for r in records]
    errors = np.array([e["accuracy"] for e in est]) - truth
    covered = sum(lo <= t <= hi for t, (lo, hi) in zip(truth, (e["interval"] for e in est)))
    right = sum(r["warned"] == (t < g) for r, t, g in zip(records, truth, given))
    residual = error_stats([r["noise_rate"]["auto"] for r in records], list(1 - truth))
    ratios = [r["seconds"] / p["seconds"] for r, p in zip(records, plain) if p is not None]
    n = len(records)
    return [title, str(n), f"{100 * errors.mean():+.1f}", f"{100 * np.abs(errors).mean():.1f}",
            f"{100 * errors[np.abs(errors).argmax()]:+.1f}",
            f"{int((np.abs(errors) <= 0.03).sum())}/{n}", f"{covered}/{n}", f"{right}/{n}", residual[1], residual[2],
            f"{np.median(ratios):.1f}×" if ratios else ""]
