"""Plots and Markdown reports of purification runs and ``dmlp reproduce`` results.

    >>> from dmlp_plugin.report import plot_history, write_report
    >>> plot_history(result, "history.png")        # one purify_dataset run, per epoch
    >>> write_report("dmlp-results")               # PNGs + report.md for a results store

Plots need matplotlib: ``pip install 'dmlp-plugin[plot]'``. Importing this package does
not import matplotlib; each plot does, and raises :class:`MissingExtraError` naming the
extra when it is missing.
"""

from __future__ import annotations

from .plots import (MissingExtraError, Plot, plot_confusion, plot_downstream, plot_history, plot_label_accuracy,
                    plot_methods, plot_trusted_size)
from .summary import Report, results_section, select_records, table_markdown, write_report

__all__ = [
    "plot_history", "plot_label_accuracy", "plot_confusion", "plot_methods", "plot_trusted_size",
    "plot_downstream", "Plot", "MissingExtraError", "write_report", "Report", "results_section",
    "select_records", "table_markdown",
]
