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

from .._lazy import lazy_exports

# name -> submodule that defines it; imported on first use, so that `dmlp --help` (which
# lists `dmlp reproduce`) loads neither the data readers nor torch
_EXPORTS = {
    **dict.fromkeys(["ResultStore"], "store"),
    **dict.fromkeys(["run_table", "run_cell", "TableRun", "code_version"], "runner"),
    **dict.fromkeys(["TABLES", "TableSpec", "CellSpec", "Protocol", "FULL", "SMOKE", "get_table"], "tables"),
    **dict.fromkeys(["Inputs", "load_inputs", "find_shared", "subset", "draw_trusted", "noisy_labels",
                     "probe_accuracy", "with_epochs", "DEFAULT_CIFAR_ROOT"], "cifar_inputs"),
    **dict.fromkeys(["table_rows", "markdown_table", "rich_table", "latest_records"], "render"),
    **dict.fromkeys(["UPSTREAM_TABLES", "UpstreamInputs", "UpstreamProtocol", "run_upstream_table",
                     "upstream_rows"], "upstream"),
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
