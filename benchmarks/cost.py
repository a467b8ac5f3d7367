"""What the default costs, against issue 28's CPU targets: the default pipeline on all
50,000 × 512 k-means training features, and ``dmlp demo``, on two threads; each candidate
family's share; the network candidate on top. Written to benchmarks/RESULTS.md.

    python benchmarks/cost.py                 # ~1 min on two idle cores (+ ~4 min with --network)
    python benchmarks/cost.py --network       # also the default with the network candidate

Times are wall seconds of ``purify_dataset`` (the feature check included) and of the
``dmlp demo`` process (Python start-up and imports included), each the median of
``--repeats`` runs, measured one after the other in one process so they share the
machine's state. Only the section between ``<!-- cost:start -->`` and ``<!-- cost:end -->``
is rewritten.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

import suite_data as data
from driver import Section, add_no_write, add_threads, command_line, git_revision, load_average, timestamp

SECTION = Section("cost")
TARGETS = {"default": 20.0, "demo": 15.0}


def time_default(config, threads: int, repeats: int) -> tuple[float, dict]:
    """Median seconds of the default on all 50,000 k-means rows (sym 50%, 100 trusted a
    class), and the timings of the median run."""
    from dmlp_plugin import purify_dataset

    cell = data.Cell("kmeans", 50000, "sym50", 100, 0)
    x, noisy, trusted, clean = data.cell_inputs(cell)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = purify_dataset(x, noisy, val_indices=trusted, val_labels=clean[trusted], config=config,
                                threads=threads, device="cpu")
        runs.append((time.perf_counter() - start, result.timings))
    runs.sort(key=lambda r: r[0])
    return runs[len(runs) // 2]


def time_demo(threads: int, repeats: int) -> float:
    env = {**os.environ, "DMLP_THREADS": str(threads)}
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dmlp_plugin", "demo", "--no-progress"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def main(argv: list[str] | None = None) -> int:
    from dmlp_plugin import PurifyConfig
    from dmlp_plugin.cli.demo import load_demo_data

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_threads(p, 2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--network", action="store_true", help="also time the default with the network candidate")
    add_no_write(p)
    args = p.parse_args(argv)
    load_start = load_average()
    rows = []
    seconds, timings = time_default(PurifyConfig(), args.threads, args.repeats)
    families = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k not in ("total",))
    rows.append(f"| the default, 50,000 × 512 | {seconds:.1f} | ≤ {TARGETS['default']:.0f} | {families} |")
    if args.network:
        net, net_timings = time_default(PurifyConfig(mlp_candidate=True), args.threads, 1)
        rows.append(f"| with the network candidate | {net:.1f} | | network candidate "
                    f"{net_timings.get('network candidate', float('nan')):.1f} s "
                    f"({net_timings.get('network candidate', 0) / max(1e-9, seconds):.1f}× the default's run) |")
    demo = time_demo(args.threads, args.repeats)
    shape = load_demo_data()["features"].shape
    rows.append(f"| `dmlp demo` (whole process) | {demo:.1f} | ≤ {TARGETS['demo']:.0f} | "
                f"{shape[0]:,} × {shape[1]} EfficientNet-Lite0 features, 500 trusted |")
    load_end = load_average()
    section = SECTION.wrap([
        "## What the default costs (CPU)", "",
        f"Run {timestamp()} at `{git_revision()}` by `{command_line('cost.py', argv)}` on {args.threads} threads of "
        f"{os.cpu_count()} cores; load average (1/5/15 min) at start {load_start}, at end {load_end}. "
        f"Median of {args.repeats} runs (the network: one). The default: `purify_dataset` on all 50,000 "
        "k-means training features (symmetric 50%, 100 trusted rows a class), the feature check included.", "",
        "| run | seconds | target | where the time goes |", "|---|---|---|---|", *rows, ""])
    SECTION.emit(section, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
