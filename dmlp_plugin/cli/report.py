"""``dmlp report``: PNG plots and a Markdown summary of a ``dmlp reproduce`` results store.

    dmlp report dmlp-results                 # writes dmlp-results/report/{report.md,*.png}
    dmlp report dmlp-results -o docs/report
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="plots and a Markdown summary of `dmlp reproduce` results (needs the plot extra)",
        description="Write PNG plots (purified-label accuracy per epoch, given vs purified confusion, "
        "classifier vs DMLP, accuracy by trusted-set size, downstream accuracy when cells carry it) and "
        "report.md, the tables beside the paper's numbers. Needs matplotlib: pip install 'dmlp-plugin[plot]'.")
    p.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="the store `dmlp reproduce` wrote")
    p.add_argument("-o", "--output", type=Path, metavar="DIR", help="where to write (default: RESULTS_DIR/report)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import write_report
    from .console import console

    report = write_report(args.results_dir, args.output)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    console.print(f"wrote {report.path} and {len(report.plots)} plot(s): "
                  + ", ".join(p.path.name for p in report.plots), highlight=False, markup=False)
    return 0
