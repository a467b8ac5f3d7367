"""Purification on a machine other jobs share: torch's default threads, one thread, and ``auto``.

Each run purifies the 50,000 CIFAR-10 k-means features at 50% symmetric noise (1,000
trusted samples) in a fresh process, so thread pools start clean. Runs are made on the idle
machine with one thread (the reference), then with ``--competitors`` CPU-bound processes
(busy loops) started beforehand: with torch's default thread count, with one thread, and
with ``threads="auto"`` (:mod:`dmlp_plugin.threads`). The target: ``auto`` on the busy
machine no worse than 1.3x the idle one-thread time. ``--write-results`` writes the table
into RESULTS.md between ``<!-- busy-machine:start -->`` and ``<!-- busy-machine:end -->``.

    python benchmarks/busy_machine.py --write-results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from driver import (RESULTS, Section, add_shared, add_write_results, comma_list, load_average, markdown_table,
                    print_table, run_child, run_context, shared_dir)

from dmlp_plugin.reproduce.cifar_inputs import FEATURES, TRAIN_LABELS, draw_trusted, noisy_labels

SECTION = Section("busy-machine")
CASES = (  # (label, machine, threads given to purify_dataset)
    ("idle, 1 thread (reference)", "idle", "1"),
    ("busy, torch's default threads", "busy", "default"),
    ("busy, 1 thread", "busy", "1"),
    ("busy, threads=auto", "busy", "auto"),
)
TARGET = 1.3


def child(shared: Path, mode: str, threads: str, epochs: int | None) -> None:
    """One purification in this process; prints its wall time and thread count as JSON."""
    import numpy as np
    import torch

    from dmlp_plugin import PurifyConfig, purify_dataset

    features = np.load(shared / FEATURES)["train"]
    clean = np.load(shared / TRAIN_LABELS)
    noisy = noisy_labels(clean, "symmetric", 0.5, seed=0)
    trusted = draw_trusted(len(clean), 1000, seed=0)
    config = PurifyConfig.paper() if mode == "paper" else PurifyConfig()
    if epochs:
        config = config.replace(epochs=epochs)
    used = []  # the thread count inside the run, as purify_dataset set it
    start = time.perf_counter()
    result = purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted], config=config,
                            threads=None if threads == "default" else threads if threads == "auto" else int(threads),
                            on_epoch=lambda epoch, record: used.append(torch.get_num_threads()) if epoch == 1 else None)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "threads": used[0], "accuracy": result.accuracy(clean)}))


def run_case(shared: Path, mode: str, threads: str, epochs: int | None) -> dict:
    cmd = [__file__, "--child", mode, threads, "--shared", str(shared)]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "DMLP_THREADS")}
    return run_child(cmd, env=env)


def busy_loops(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared(p)
    p.add_argument("--modes", default="default,paper", help="configs: default, paper (comma-separated)")
    p.add_argument("--competitors", type=int, default=1, help="CPU-bound processes on the busy machine (default 1)")
    p.add_argument("--epochs", type=int, default=None, help="shorten every run")
    p.add_argument("--settle", type=float, default=3.0, help="seconds between starting the competitors and a run")
    p.add_argument("--repeats", type=int, default=3, help="runs per case; the table shows the median (default 3)")
    add_write_results(p, SECTION)
    p.add_argument("--child", nargs=2, metavar=("MODE", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    shared = shared_dir(args.shared)
    if args.child:
        child(shared, *args.child, args.epochs)
        return 0
    for need in (FEATURES, TRAIN_LABELS):
        if not (shared / need).is_file():
            sys.exit(f"missing shared input: {shared / need}")
    began, load_start = datetime.datetime.now(), load_average()
    rows = []
    for mode in comma_list(args.modes):
        reference = None
        for label, machine, threads in CASES:
            runs = []
            for _ in range(args.repeats):
                loops = busy_loops(args.competitors) if machine == "busy" else []
                try:
                    time.sleep(args.settle if loops else 0)
                    runs.append(run_case(shared, mode, threads, args.epochs))
                finally:
                    for proc in loops:
                        proc.kill()
                        proc.wait()
            seconds = sorted(r["seconds"] for r in runs)
            median = seconds[len(seconds) // 2]
            reference = reference or median
            ratio = median / reference
            verdict = ("target met" if ratio <= TARGET else "target missed") if threads == "auto" else ""
            used = sorted({r["threads"] for r in runs})
            rows.append([mode, label, "/".join(map(str, used)), f"{median:.1f}",
                         " ".join(f"{s:.1f}" for s in seconds), f"{ratio:.2f}x", f"{runs[0]['accuracy']:.2%}", verdict])
            print(f"{mode}: {label}: median {median:.1f} s of {seconds} with {used} thread(s) ({ratio:.2f}x)",
                  flush=True)
    head = ["config", "machine and threads", "torch threads", "median wall (s)", "every run (s)",
            "÷ idle 1 thread", "label accuracy", ""]
    print_table("Busy machine", head, rows)
    if args.write_results:
        SECTION.write(SECTION.wrap_run(
            "## Purification on a busy machine (`benchmarks/busy_machine.py`)",
            run_context("busy_machine.py", began, load_start, argv),
            f"The busy machine has {args.competitors} CPU-bound process(es) (a Python busy loop) running through "
            f"each run. Each case runs {args.repeats} times; the median counts. Each run purifies the 50,000 "
            "CIFAR-10 k-means features at symmetric 50% noise (1,000 trusted samples) in a fresh process. Target: "
            f"`threads=\"auto\"` on the busy machine within {TARGET}x of the idle one-thread time.",
            markdown_table(head, rows)), RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
