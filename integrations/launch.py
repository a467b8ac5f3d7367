"""``python -m dmlp_integrations.launch SCRIPT ARGS...``: what ``dmlp run`` executes.

It prepares the interpreter, then runs ``SCRIPT`` as ``__main__`` with ``ARGS``, from
the script's own folder on ``sys.path`` exactly as ``python SCRIPT ARGS`` would. What it
prepares is read from the environment ``dmlp run`` sets:

``DMLP_RUN_MAX_ITERS=N``
    Stop (exit status 0) after ``N`` batches drawn from shuffling DataLoaders.
``DMLP_RUN_MAX_EVAL_BATCHES=K``
    End every pass over a non-shuffling (evaluation) DataLoader after ``K`` batches.
``DMLP_RUN_SKIP_MD5=1``
    Accept dataset files whose md5 differs from the published one (CIFAR rebuilt from
    re-encoded images): every ``check_integrity`` function, torchvision's and the
    upstream's own, answers True.
``DMLP_RUN_NUM_WORKERS=K``
    Force every DataLoader to ``K`` worker processes.

On a machine without CUDA the launcher also makes CUDA-only calls run on the CPU
(:mod:`dmlp_integrations.cpu`). With CUDA present it changes nothing but what the
variables above ask for. A dmlp-plugin error that reaches the script's top ends the run
with one line and exit status 2 (the traceback with ``DMLP_DEBUG=1``).
"""

from __future__ import annotations

import os
import runpy
import sys

__all__ = ["main", "ENV_MAX_ITERS", "ENV_MAX_EVAL_BATCHES", "ENV_SKIP_MD5", "ENV_NUM_WORKERS"]

ENV_MAX_ITERS = "DMLP_RUN_MAX_ITERS"
ENV_MAX_EVAL_BATCHES = "DMLP_RUN_MAX_EVAL_BATCHES"
ENV_SKIP_MD5 = "DMLP_RUN_SKIP_MD5"
ENV_NUM_WORKERS = "DMLP_RUN_NUM_WORKERS"


def prepare() -> list[str]:
    """Install what the environment asks for; returns a line per thing installed."""
    from . import cpu

    done = []
    if cpu.install_cpu_fallbacks():
        done.append("CUDA calls run on the CPU (no GPU found)")
    if os.environ.get(ENV_SKIP_MD5, "") not in ("", "0"):
        cpu.skip_integrity_checks()
        done.append("md5 integrity checks skipped")
    workers = os.environ.get(ENV_NUM_WORKERS)
    if workers not in (None, ""):
        cpu.force_num_workers(int(workers))
        done.append(f"DataLoaders use {workers} worker(s)")
    max_iters = os.environ.get(ENV_MAX_ITERS)
    if max_iters not in (None, ""):
        from .batches import set_iteration_budget

        set_iteration_budget(int(max_iters))
        done.append(f"stop after {max_iters} training iterations")
    max_eval = os.environ.get(ENV_MAX_EVAL_BATCHES)
    if max_eval not in (None, ""):
        from .batches import set_eval_budget

        set_eval_budget(int(max_eval))
        done.append(f"evaluation passes end after {max_eval} batch(es)")
    return done


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.exit("usage: python -m dmlp_integrations.launch SCRIPT [ARGS...]")
    script = os.path.abspath(argv[0])
    if not os.path.isfile(script):
        sys.exit(f"dmlp run: script not found: {argv[0]}")
    for line in prepare():
        print(f"[dmlp-plugin] dmlp run: {line}", file=sys.stderr, flush=True)
    sys.argv = [argv[0], *argv[1:]]
    sys.path.insert(0, os.path.dirname(script))
    from .state import stop_on_error

    # The inserted calls stop a run themselves; this catches what reaches the script's top.
    with stop_on_error():
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
