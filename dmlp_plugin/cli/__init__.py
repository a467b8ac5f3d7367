"""The ``dmlp`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the
parsed namespace; returns an exit code). ``main`` lists them in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

__all__ = ["main", "build_parser", "COMMANDS"]

# Order is the order of `dmlp --help`.
COMMANDS = ("purify", "check-features", "review", "demo", "noise", "trusted", "adapters", "integrate", "run",
            "data", "features", "pretrain", "reproduce", "report")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="dmlp",
        description="DMLP: purify noisy labels from frozen self-supervised features, "
        "then hand them to your learning-with-noisy-labels method.")
    parser.add_argument("--version", action="version", version=f"dmlp-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `dmlp run ... -- python SCRIPT ARGS`: everything after the first `--` is the command.
    command = argv[argv.index("--") + 1:] if "--" in argv else None
    args = parser.parse_args(argv if command is None else argv[: argv.index("--")])
    if command is not None:
        if not getattr(args, "takes_command", False):
            parser.error("unexpected arguments after `--`")
        args.command = command
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # Outputs are written whole or not at all; a command that keeps finished parts says so,
        # and `dmlp run`'s command (someone else's script) writes what it writes.
        default = "interrupted" if getattr(args, "takes_command", False) else "interrupted; nothing written"
        print(getattr(args, "interrupted", default), file=sys.stderr)
        return 130
    except Exception as exc:  # one line, not a traceback, unless DMLP_DEBUG=1 asks for it
        from rich.markup import escape

        from ..failures import debug_enabled, describe_failure
        from .console import err_console

        if debug_enabled():
            raise
        message, status = describe_failure(exc)
        # escape: a message may hold brackets ("dmlp-plugin[plot]", shapes) that rich would eat
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
