"""The benchmark suite: every method on cells spanning feature strength, trusted-set size,
noise type and rows; resumable, cached, and one command to write its RESULTS.md section.

    python benchmarks/suite.py run --draws bench --jobs 2            # fill the cache (resumable)
    python benchmarks/suite.py report --draws bench --write-results  # the RESULTS.md section
    python benchmarks/suite.py run --draws tune --methods dmlp:noshrink --rows 10000   # a variant
    python benchmarks/suite.py run --draws 0 --rows 10000 --methods estimates     # the default's own estimates

A cell is (feature set, rows, noise, trusted rows per class, draw) (``suite_data.py``); a
method is one of ``suite_methods.METHODS``. Every (method, cell) result is a JSON file in
``.bench-cache/suite/`` under a key of its cell and of the code that made it, so an engine
change reruns the dmlp methods only. ``run`` takes cells in draw-major order, so an
interrupted run leaves whole tables over fewer draws.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import suite_data as data
import suite_methods as methods
from driver import comma_list, write_json
from suite_data import cells_of
from suite_methods import load, result_path


def _job(job: tuple[str, data.Cell, str]) -> tuple[str, data.Cell, dict]:
    method, cell, digest = job
    import torch

    torch.set_num_threads(int(os.environ.get("SUITE_THREADS", "1")))
    out = methods.run_method(method, cell)
    out.update(method=method, cell=cell.key)
    write_json(result_path(method, cell, digest), out)
    return method, cell, out


def run(args: argparse.Namespace) -> int:
    digests = {m: methods.method_digest(m) for m in args.methods}
    todo = [(m, c, digests[m]) for c in cells_of(args) for m in args.methods if load(m, c, digests[m]) is None]
    todo = [(m, c, d) for m, c, d in todo if not _skipped(m, c, args)]
    print(f"{len(todo)} runs to do ({args.jobs} at a time)", flush=True)
    if args.jobs <= 1:
        _print_progress(map(_job, todo), len(todo))
        return 0
    import multiprocessing as mp

    # the with-block closes the workers before the interpreter exits (no broken pipes at exit)
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=20) as pool:
        _print_progress(pool.imap_unordered(_job, todo), len(todo))
    return 0


def _print_progress(results, total: int) -> None:
    start = time.time()
    for i, (method, cell, out) in enumerate(results, 1):
        print(f"[{i}/{total} {time.time() - start:6.0f}s] {cell.key:45s} {method:14s} "
              f"{100 * out['label_acc']:6.2f}  {out['seconds']:7.1f} s", flush=True)


def _skipped(method: str, cell: data.Cell, args: argparse.Namespace) -> bool:
    """The network candidate runs on the 10,000-row cells only unless asked (it is the
    costliest candidate: minutes a cell on CPU at 50,000 rows)."""
    return method == "dmlp" and cell.rows > args.network_rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "report"))
    p.add_argument("--draws", default="bench", help="tune (100-102), bench (0-1) or a list")
    p.add_argument("--features", default=",".join(data.FEATURE_SETS))
    p.add_argument("--rows", default=",".join(str(r) for r in data.ROWS))
    p.add_argument("--noises", default=",".join(data.NOISES))
    p.add_argument("--trusted", default=",".join(str(t) for t in data.TRUSTED_PER_CLASS))
    p.add_argument("--methods", default=",".join(methods.METHODS))
    p.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each (SUITE_THREADS)")
    p.add_argument("--network-rows", type=int, default=10000,
                   help="run the network candidate (method dmlp) on cells of at most this many rows")
    p.add_argument("--write-results", action="store_true", help="report: rewrite RESULTS.md's suite section")
    p.add_argument("--section", choices=("suite", "network", "estimates"), default="suite",
                   help="report: the suite's tables, the network candidate's gain and cost, or how close the "
                        "default's own estimates come (method estimates)")
    args = p.parse_args(argv)
    args.argv = argv
    args.features = comma_list(args.features)
    args.rows = comma_list(args.rows, int)
    args.noises = comma_list(args.noises)
    args.trusted = comma_list(args.trusted, int)
    args.methods = comma_list(args.methods)
    known = [*methods.METHODS, methods.ESTIMATES, *(f"dmlp:{name}" for name in methods.VARIANTS)]
    unknown = [m for m in args.methods if m not in known]
    if unknown:
        p.error(f"unknown method {', '.join(unknown)}; known: {', '.join(known)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "run":
        return run(args)
    from suite_report import report

    return report(args)


if __name__ == "__main__":
    sys.exit(main())
