"""A table's records as rows beside the paper's figures (Markdown or rich)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .tables import TableSpec

__all__ = ["table_rows", "markdown_table", "rich_table", "group_records", "latest_records", "FEATURE_NOTE"]

#: Why our numbers sit far below the paper's, printed under every table.
FEATURE_NOTE = ("Ours: linear classifiers on CIFAR-10 k-means features, on which a linear probe trained on "
                "all 50,000 clean labels reaches 65.9% test accuracy; the paper: SimCLR ResNet-50 features "
                "(a linear probe reaches about 90%) and a trained ResNet. Compare our rows with each other, "
                "not their absolute values with the paper's.")

#: Accuracies in %: the given and the purified labels on the non-trusted rows, a linear
#: classifier trained on the labels on the test set, and the paper's figure.
HEAD = ["setting", "method", "given labels", "purified labels", "linear test", "paper", "purify (s)"]


def latest_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per ``key`` and seed: the most recently finished (a store can hold cells
    of an older config under another id; the newest is the one that counts)."""
    best: dict[tuple[str, str, int], dict[str, Any]] = {}
    for record in records:
        k = (record["table"], record.get("key", record["cell_id"]), int(record.get("seed", 0)))
        if k not in best or str(record.get("finished", "")) >= str(best[k].get("finished", "")):
            best[k] = record
    return list(best.values())


def group_records(records: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Records grouped by setting (``panel``, ``series``) over seeds, in first-seen order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record.get("panel", ""), record.get("series", "")), []).append(record)
    return list(groups.values())


def mean_std(values: list[float | None], *, scale: float = 100.0) -> str:
    """``mean ± std`` of the values present (× ``scale``), one value alone, or "—"."""
    values = [scale * v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def table_rows(table: TableSpec | str, records: Iterable[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """``(head, body)``: one row per setting, seeds averaged (mean ± std over seeds)."""
    # A table this version does not define (cells another tool stored) still renders.
    name = table if isinstance(table, str) else table.name
    body = []
    for group in group_records(r for r in records if r["table"] == name):
        first = group[0]
        metric = lambda name: [r["metrics"].get(name) for r in group]  # noqa: E731
        paper = first.get("paper") or {}
        seconds = [r.get("purify_s") or 0.0 for r in group]
        body.append([
            first.get("panel", ""),
            first.get("series", "") + (f" ({len(group)} seeds)" if len(group) > 1 else ""),
            mean_std(metric("given_label_accuracy")),
            "—" if first.get("method") == "classifier" else mean_std(metric("label_accuracy")),
            mean_std(metric("linear_test_accuracy")),
            f"{paper['value']:.2f}" if paper.get("value") is not None else "—",
            f"{np.mean(seconds):.1f}" if first.get("method") != "classifier" else "—",
        ])
    return list(HEAD), body


def markdown_table(head: list[str], body: list[list[str]]) -> list[str]:
    """Lines of a GitHub Markdown table."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(row) + " |"
                                                                         for row in body]


def rich_table(title: str, head: list[str], body: list[list[str]]):
    """A :class:`rich.table.Table` of the same rows."""
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for i, name in enumerate(head):
        out.add_column(name, justify="left" if i < 2 else "right")
    for row in body:
        out.add_row(*row)
    return out
