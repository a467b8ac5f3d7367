"""``dmlp adapters list``: the adapters installed plugins register, and where they come from."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "adapters", help="list the installed upstream adapters",
        description="Adapters connect purified labels to upstream codebases. They are registered "
        "by plugins (entry-point group `dmlp_plugin`); see docs/writing-adapters.md.")
    actions = parser.add_subparsers(dest="adapters_action", metavar="ACTION")
    listing = actions.add_parser(
        "list", help="table of adapters: name, version, distribution, upstream (URLs in full)",
        description="List registered adapters. DMLP_DISABLE_PLUGIN_AUTOLOAD=1 leaves out third-party "
        "plugins; DMLP_PLUGINS=a,b loads only those.")
    listing.add_argument("--skip-broken", action="store_true",
                         help="list the healthy adapters even if some plugins fail to load, "
                         "and report the broken ones (default: stop at the first broken plugin)")
    listing.set_defaults(func=_list)

    def _usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_usage)


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..plugins import build_plugin_manager, get_plugin_manager
    from .console import console, err_console

    pm = build_plugin_manager(skip_broken=True) if args.skip_broken else get_plugin_manager()
    adapters = pm.adapters
    rows = []
    for name in sorted(adapters):
        entry = adapters[name]
        source = entry.source
        rows.append((name, source.version or "-", source.distribution or f"(in-process plugin {source.name!r})",
                     str(entry.cls.upstream)))
    # No borders, and no column is cut: a truncated URL cannot be copied. The URL goes last,
    # so on a narrow terminal only it runs past the edge.
    table = Table(title="dmlp adapters", box=None, pad_edge=False, padding=(0, 2, 0, 0), title_justify="left")
    for i, header in enumerate(("name", "version", "distribution", "upstream")):
        table.add_column(header, no_wrap=True, overflow="ignore", header_style="bold",
                         min_width=max([len(r[i]) for r in rows] + [len(header)]))
    for row in rows:
        table.add_row(*row)
    if adapters:
        console.print(table, crop=False)
    else:
        err_console.print("no adapters are registered; is dmlp-plugin installed (`pip install -e .`)?")
    for broken in pm.broken if args.skip_broken else ():
        err_console.print(f"[bold yellow]skipped:[/] {broken.error}", highlight=False)
    return 0
