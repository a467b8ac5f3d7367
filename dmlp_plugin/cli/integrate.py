"""``dmlp integrate METHOD CLONE``: add ``--dmlp`` to an upstream clone, or take it out again.

    dmlp integrate dividemix ~/DivideMix --check      # supported? why not?
    dmlp integrate dividemix ~/DivideMix --dry-run    # the unified diff, nothing written
    dmlp integrate dividemix ~/DivideMix              # apply (idempotent)
    dmlp integrate dividemix ~/DivideMix --revert     # restore every file byte for byte

Only files inside the clone are read or written, never through a link; an integration
stopped part-way is reported by --check as interrupted, and --revert finishes it.

The recipe comes from the adapter registered as METHOD (``Adapter.integration``), so a
third-party adapter package can ship its own.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InputError

__all__ = ["register", "recipe_for"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "integrate", help="add --dmlp to a clone of an upstream LNL repository (or revert it)",
        description="Patch a clone of an upstream repository with short anchored edits so its training "
        "script takes --dmlp PURIFIED.npz and trains on purified labels. Every anchor is checked before "
        "anything is written; a marker file (.dmlp-integration.json) records the originals, so --revert "
        "is byte-exact. Upstream code is never run.")
    p.add_argument("method", help="adapter name: dividemix, elr_plus, cdr, coteaching (see `dmlp adapters list`)")
    p.add_argument("clone", help="folder of the upstream clone")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="say whether the clone is supported, and why not")
    mode.add_argument("--dry-run", action="store_true", help="print the unified diff; write nothing")
    mode.add_argument("--revert", action="store_true", help="restore every edited file byte for byte (also "
                      "finishes an interrupted integration or revert)")
    p.add_argument("--ignore-permissions", action="store_true",
                   help="also edit files that are read-only or not owned by the clone's owner (refused by "
                   "default); owner, group and permission bits are kept either way")
    p.set_defaults(func=_run)


def recipe_for(method: str) -> Any:
    """The integration recipe of the adapter registered as ``method``."""
    from ..plugins import get_adapter

    recipe = get_adapter(method).integration
    if recipe is None:
        raise InputError(f"adapter {method!r} has no integration recipe; it is used from Python "
                         "(Adapter.inject) rather than patched into a clone")
    return recipe


def _run(args: argparse.Namespace) -> int:
    from dmlp_integrations import apply

    from .. import __version__
    from .console import console, err_console

    recipe = recipe_for(args.method)
    if args.revert:
        restored = apply.revert(recipe, args.clone, ignore_permissions=args.ignore_permissions)
        console.print(f"reverted {args.clone}: restored {len(restored)} file(s) byte for byte"
                      + (f" ({', '.join(restored)})" if restored else ""), highlight=False)
        return 0
    if args.check:
        st = apply.status(recipe, args.clone)
        style = {"pristine": "green", "integrated": "green"}.get(st.state.value, "red")
        console.print(f"[{style}]{st.state.value}[/]: {st.message}", highlight=False)
        return 0 if st.state.value in ("pristine", "integrated") else 1
    if args.dry_run:
        # Plain stdout: a console would wrap long lines and the saved diff would not apply.
        sys.stdout.write(apply.unified_diff(apply.plan(recipe, args.clone)))
        return 0
    plan, message = apply.integrate(recipe, args.clone, version=__version__,
                                    ignore_permissions=args.ignore_permissions)
    console.print(message, highlight=False)
    if plan is not None:
        if plan.untested:
            err_console.print(f"[yellow]note:[/] {', '.join(plan.untested)} differ(s) from the tested commit; "
                              "every anchor matched", highlight=False)
        workdir = "" if recipe.workdir == "." else f"cd {recipe.workdir} && "
        console.print(f"next: {workdir}python {recipe.entry} ... --dmlp purified.npz", highlight=False)
    return 0
