"""Purification at scale: 1,000,000 × 2048 float16 features under a memory budget.

Synthetic data with known truth: ``--classes`` planted class centres in ``--dims``
dimensions, each row its class centre plus Gaussian noise (scaled so that the classes
overlap: a linear classifier on the clean labels is far from perfect), stored as one
float16 ``.npy`` (4 GB at 1M × 2048) and read memory-mapped. Labels carry ``--noise``
symmetric noise (the DivideMix convention: a uniformly drawn class, which may be the true
one); ``--trusted`` random rows keep their clean label as the trusted set.

Each size (the first N rows of the file) is purified with the default config and
``max_memory=--max-memory`` in a fresh process, which reports its peak RSS (``VmHWM``,
the memory-mapped file's resident pages included), the time per epoch and in total, and
the label accuracy. The smallest size also runs in memory (no budget) and in chunks
(half the memory it takes whole), to show that both paths give the same labels. ``--write-results`` writes the table into RESULTS.md between
``<!-- scale:start -->`` and ``<!-- scale:end -->``.

    python benchmarks/scale.py --write-results              # ~30 min on 2 cores, 4 GB of disk
    python benchmarks/scale.py --rows 20000,60000 --dims 256  # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from driver import (RESULTS, Section, add_write_results, comma_list, load_average, markdown_table, print_table,
                    rss_bytes, run_child, run_context, write_npy)

SECTION = Section("scale")
TARGET_GB = 10.0


def make_data(folder: Path, n: int, dims: int, classes: int, noise: float, seed: int) -> Path:
    """Write (once) the features, clean and noisy labels for ``n`` rows; returns the features' path."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"planted-{n}x{dims}-c{classes}-noise{noise:g}-seed{seed}"
    feats_path = folder / f"{stem}.npy"
    if feats_path.exists() and (folder / f"{stem}-noisy.npy").exists():
        return feats_path
    rng = np.random.default_rng(seed)
    # Centres about 4 apart against unit noise in every dimension: neighbouring classes
    # overlap (the Bayes error is several percent), so labels are not trivially recoverable.
    centres = rng.normal(size=(classes, dims)) * np.sqrt(8.0 / dims)
    clean = rng.integers(0, classes, n)
    noisy = clean.copy()
    flip = rng.random(n) < noise
    noisy[flip] = rng.integers(0, classes, int(flip.sum()))
    tmp = feats_path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, dims))
    block = 50_000
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = centres[clean[start:stop]] + rng.normal(size=(stop - start, dims))
        out[start:stop] = rows.astype(np.float16)
    out.flush()
    del out
    os.replace(tmp, feats_path)
    for name, arr in (("clean", clean), ("noisy", noisy)):
        write_npy(folder / f"{stem}-{name}.npy", arr)
    return feats_path


def child(features: Path, n: int, trusted: int, max_memory: str | None, threads: int | None) -> None:
    """One purification of the first ``n`` rows in this process; prints a JSON record."""
    from dmlp_plugin import PurifyConfig, purify_dataset

    stem = str(features)[:-len(".npy")]
    x = np.load(features, mmap_mode="r")[:n]
    clean = np.load(stem + "-clean.npy")[:n]
    noisy = np.load(stem + "-noisy.npy")[:n]
    val = np.random.default_rng(1).choice(n, trusted, replace=False)
    if max_memory == "half":  # half of what the run takes in memory: forces chunks at any size
        from dmlp_plugin.streaming import plan_memory

        whole = plan_memory(n - trusted, x.shape[1], int(noisy.max()) + 1, PurifyConfig(), source_dtype=x.dtype)
        max_memory = whole.in_memory_bytes // 2
    config = PurifyConfig(max_memory=max_memory)
    start = time.perf_counter()
    result = purify_dataset(x, noisy, val_indices=val, val_labels=clean[val], config=config, seed=0,
                            threads=threads, device="cpu")
    seconds = time.perf_counter() - start
    rest = np.setdiff1d(np.arange(n), val)
    np.save(f"{stem}-labels-{n}-{'streamed' if result.metadata['memory']['streamed'] else 'memory'}.npy",
            result.labels)
    print(json.dumps({
        "n": n, "seconds": seconds, "timings": result.timings, "rounds": config.rounds,
        "peak_rss": rss_bytes()[1],
        "accuracy": float((result.labels[rest] == clean[rest]).mean()),
        "given": float((noisy[rest] == clean[rest]).mean()), "memory": result.metadata["memory"],
        "selected": result.metadata.get("selected")}))


#: Timings of a default run that are not a candidate family's.
_NOT_CANDIDATES = ("setup", "least-squares rounds", "feature_check", "total")


def run_size(features: Path, n: int, args: argparse.Namespace, max_memory: str | None) -> dict:
    cmd = [__file__, "--child", str(features), str(n), "--trusted", str(args.trusted),
           "--max-memory", max_memory or "none"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        return run_child(cmd)
    except RuntimeError as exc:
        sys.exit(f"the run of {n} rows failed: {exc}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="100000,300000,1000000", help="sizes, comma-separated (default: %(default)s)")
    p.add_argument("--dims", type=int, default=2048)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--noise", type=float, default=0.4, help="symmetric noise rate (default 0.4)")
    p.add_argument("--trusted", type=int, default=1000)
    p.add_argument("--max-memory", default="4GB", help="the budget of the runs (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: purify_dataset's auto)")
    p.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "dmlp" / "scale",
                   help="where the synthetic features are written, once (default: %(default)s)")
    p.add_argument("--no-compare", action="store_true", help="skip the in-memory run of the smallest size")
    add_write_results(p, SECTION)
    p.add_argument("--child", nargs=2, metavar=("FEATURES", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        budget = None if args.max_memory == "none" else args.max_memory
        child(Path(args.child[0]), int(args.child[1]), args.trusted, budget, args.threads)
        return 0
    sizes = sorted(comma_list(args.rows, int))
    began, load_start = datetime.datetime.now(), load_average()
    t0 = time.perf_counter()
    features = make_data(args.data_dir, sizes[-1], args.dims, args.classes, args.noise, seed=0)
    print(f"data: {features} ({features.stat().st_size / 1e9:.1f} GB, {time.perf_counter() - t0:.0f} s)", flush=True)
    runs = []
    if not args.no_compare:
        runs.append(("in memory", run_size(features, sizes[0], args, None)))
        runs.append(("max_memory = ½ of in memory", run_size(features, sizes[0], args, "half")))
        print(f"{sizes[0]:,} rows in memory: {runs[-2][1]['seconds']:.1f} s, in chunks: {runs[-1][1]['seconds']:.1f} s",
              flush=True)
    for n in sizes:
        runs.append((f"max_memory={args.max_memory}", run_size(features, n, args, args.max_memory)))
        print(f"{n:,} rows under {args.max_memory}: {runs[-1][1]['seconds']:.1f} s, "
              f"peak RSS {runs[-1][1]['peak_rss'] / 1e9:.2f} GB", flush=True)
    base = next(r for how, r in runs if how.startswith("max_memory="))
    rows = []
    for how, r in runs:
        t = r["timings"]
        memory = r["memory"]
        rows.append([f"{r['n']:,}", how, "yes" if memory["streamed"] else "no",
                     "—" if memory["chunk_rows"] is None else f"{memory['chunk_rows']:,}",
                     f"{r['peak_rss'] / 1e9:.2f}", f"{memory['estimated_bytes'] / 1e9:.2f}",
                     f"{t['least-squares rounds'] / r['rounds']:.3f}", f"{t['setup']:.1f}",
                     f"{sum(v for k, v in t.items() if k not in _NOT_CANDIDATES):.1f}",
                     f"{r['seconds']:.1f}", f"{r['seconds'] / r['n'] * base['n'] / base['seconds']:.2f}",
                     f"{r['given']:.2%}", f"{r['accuracy']:.2%}", r["selected"] or ""])
    head = ["rows", "run", "streamed", "chunk rows", "peak RSS (GB)", "estimate (GB)", "s / least-squares round",
            "setup (s)", "other candidates (s)", "total (s)", "time per row ÷ smallest", "given labels",
            "purified labels", "labels from"]
    print_table("Scale", head, rows)
    agreement = ""
    if not args.no_compare:
        stem = str(features)[:-len(".npy")]
        a = np.load(f"{stem}-labels-{sizes[0]}-memory.npy")
        b = np.load(f"{stem}-labels-{sizes[0]}-streamed.npy")
        agreement = (f"At {sizes[0]:,} rows the run in memory and the run in chunks (half its budget) return "
                     f"the same label for {(a == b).mean():.4%} of rows.")
        print(agreement)
    largest = runs[-1][1]
    verdict = ("met" if largest["peak_rss"] / 1e9 <= TARGET_GB else "missed")
    print(f"peak RSS at {largest['n']:,} rows: {largest['peak_rss'] / 1e9:.2f} GB (target ≤ {TARGET_GB} GB: {verdict})")
    if args.write_results:
        SECTION.write(SECTION.wrap_run(
            "## Scale: 1M × 2048 features in bounded memory (`benchmarks/scale.py`)",
            run_context("scale.py", began, load_start, argv),
            f"Synthetic features with {args.classes} planted classes, {sizes[-1]:,} × {args.dims} float16 in one "
            "memory-mapped `.npy` "
            f"({features.stat().st_size / 1e9:.1f} GB); symmetric noise {args.noise:.0%}; {args.trusted:,} "
            "trusted rows; the default config. Each size is the first N rows of the file, purified in a fresh "
            "process; peak RSS is that process's high-water mark (`VmHWM`), which includes the resident "
            "pages of the memory-mapped file. \"estimate\": the planner's figure for the run (`dmlp_plugin/streaming.py`), "
            "which leaves the mapped file out. \"time per row ÷ smallest\": total time per row relative to "
            "the smallest streamed run (1.00 is linear growth).", markdown_table(head, rows),
            [agreement + f" Target: peak RSS ≤ {TARGET_GB:g} GB at the largest size: **{verdict}** "
             f"({largest['peak_rss'] / 1e9:.2f} GB).", ""]), RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
