"""``dmlp run METHOD -- python SCRIPT ARGS``: run an integrated clone, on a CPU if need be.

    dmlp run coteaching --max-iters 20 --skip-md5 -- python main.py --dataset cifar10 --dmlp p.npz

Runs the command through :mod:`dmlp_integrations.launch`: without a GPU, ``.cuda()`` and
CUDA device strings stay on the CPU; ``--max-iters`` stops after N training batches;
``--skip-md5`` accepts re-encoded CIFAR files. On a GPU machine only the options given
change anything. The exit status is the command's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["register", "build_command"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run", usage="dmlp run METHOD [options] -- python SCRIPT [ARGS...]", help="run an integrated upstream command (CPU fallback, --max-iters, --skip-md5)",
        description="Run an upstream training command of an integrated clone. Without a GPU, CUDA calls "
        "run on the CPU. Put the command after `--`: dmlp run cdr -- python main.py --dmlp p.npz")
    p.add_argument("method", help="adapter name; the clone must be cleanly integrated for it "
                   "(`dmlp integrate METHOD CLONE --check` says integrated)")
    p.add_argument("--cwd", metavar="DIR", help="folder to run in (default: here)")
    p.add_argument("--max-iters", type=int, metavar="N", help="stop after N training batches (exit status 0)")
    p.add_argument("--max-eval-batches", type=int, metavar="K", help="end every evaluation pass (loaders "
                   "that do not shuffle) after K batches, for smoke runs")
    p.add_argument("--skip-md5", action="store_true", help="accept dataset files whose md5 differs "
                   "(CIFAR rebuilt from re-encoded images)")
    p.add_argument("--num-workers", type=int, metavar="K", help="force every DataLoader to K worker processes")
    p.add_argument("--record", metavar="PATH", help="alignment record of a --dmlp run (default: dmlp-record.json)")
    # The command after `--` is split off by dmlp_plugin.cli.main, so its options never clash with ours.
    p.set_defaults(func=_run, command=[], takes_command=True)


def build_command(command: list[str]) -> list[str]:
    """``python [FLAGS] SCRIPT ARGS`` -> ``python [FLAGS] -m dmlp_integrations.launch SCRIPT ARGS``."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise InputError("dmlp run needs a command after `--`, e.g. `-- python main.py --dmlp purified.npz`")
    python, rest = command[0], command[1:]
    if not Path(python).name.startswith("python"):
        raise InputError(f"dmlp run runs Python training scripts: expected `python SCRIPT.py ...`, got {python!r}")
    flags = []
    while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
        flags.append(rest.pop(0))
    if not rest or rest[0] in ("-m", "-c"):
        raise InputError("dmlp run needs a script file: `python SCRIPT.py ARGS` (not -m or -c)")
    return [python, *flags, "-m", "dmlp_integrations.launch", *rest]


def _run(args: argparse.Namespace) -> int:
    from dmlp_integrations import launch

    cwd = Path(args.cwd).expanduser() if args.cwd else Path.cwd()
    if not cwd.is_dir():
        raise InputError(f"--cwd {cwd} is not a folder")
    argv = build_command(list(args.command))
    script = cwd / argv[argv.index("dmlp_integrations.launch") + 1]
    if not script.is_file():
        raise InputError(f"script not found: {script}")
    _check_integrated(args.method, cwd)
    env = dict(os.environ)
    if args.max_iters is not None:
        if args.max_iters < 1:
            raise InputError("--max-iters must be at least 1")
        env[launch.ENV_MAX_ITERS] = str(args.max_iters)
    if args.max_eval_batches is not None:
        if args.max_eval_batches < 1:
            raise InputError("--max-eval-batches must be at least 1")
        env[launch.ENV_MAX_EVAL_BATCHES] = str(args.max_eval_batches)
    if args.skip_md5:
        env[launch.ENV_SKIP_MD5] = "1"
    if args.num_workers is not None:
        env[launch.ENV_NUM_WORKERS] = str(args.num_workers)
    if args.record:
        from dmlp_integrations.runtime import ENV_RECORD

        env[ENV_RECORD] = str(Path(args.record).expanduser().resolve())
    if argv[0] == "python":
        argv[0] = sys.executable  # the interpreter dmlp-plugin is installed in
    return subprocess.call(argv, cwd=cwd, env=env)


def _check_integrated(method: str, cwd: Path) -> None:
    """Refuse to run unless ``cwd`` is inside a clone cleanly integrated for ``method``: the
    marker done, and every edited file as integration left it."""
    from dmlp_integrations.apply import MARKER, has_marker, require_integrated

    from .integrate import recipe_for

    recipe = recipe_for(method)  # a clear error for an unknown method
    for folder in (cwd, *cwd.parents):
        if has_marker(folder):
            require_integrated(recipe, folder)
            return
    raise InputError(f"{cwd} is not inside an integrated clone (no {MARKER}); run "
                     f"`dmlp integrate {method} CLONE` first")
