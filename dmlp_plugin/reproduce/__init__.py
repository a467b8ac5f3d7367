"""Reproducing the DMLP paper's tables on CIFAR-10 features (``dmlp reproduce``).

    >>> from dmlp_plugin.reproduce import ResultStore, run_table, load_inputs, find_shared
    >>> store = ResultStore("dmlp-results")
    >>> run = run_table("table5", store, lambda: load_inputs(find_shared(), DEFAULT_CIFAR_ROOT), smoke=True)
    >>> run.records[0]["metrics"]["label_accuracy"]

Every cell is one JSON file in the store, written as soon as it finishes; a rerun skips
finished cells. The GPU tables (``table4``, ``table1-dividemix``: integrated upstream methods with
and without ``--dmlp``) are in :mod:`dmlp_plugin.reproduce.upstream`, ``table8`` (feature sources)
in :mod:`dmlp_plugin.reproduce.feature_tables`. ``docs/reproduce.md`` describes the tables and the
record format.
"""

from __future__ import annotations

from .cifar_inputs import DEFAULT_CIFAR_ROOT, Inputs, draw_trusted, find_shared, load_inputs, noisy_labels, \
    probe_accuracy, subset, with_epochs
from .render import latest_records, markdown_table, rich_table, table_rows
from .runner import TableRun, code_version, run_cell, run_table
from .store import ResultStore
from .upstream import UPSTREAM_TABLES, UpstreamInputs, UpstreamProtocol, run_upstream_table, upstream_rows
from .tables import FULL, SMOKE, TABLES, CellSpec, Protocol, TableSpec, get_table

__all__ = [
    "ResultStore", "run_table", "run_cell", "TableRun", "code_version",
    "TABLES", "TableSpec", "CellSpec", "Protocol", "FULL", "SMOKE", "get_table",
    "Inputs", "load_inputs", "find_shared", "subset", "draw_trusted", "noisy_labels", "probe_accuracy",
    "with_epochs", "DEFAULT_CIFAR_ROOT",
    "table_rows", "markdown_table", "rich_table", "latest_records",
    "UPSTREAM_TABLES", "UpstreamInputs", "UpstreamProtocol", "run_upstream_table", "upstream_rows",
]
