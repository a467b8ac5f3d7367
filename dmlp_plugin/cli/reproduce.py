"""``dmlp reproduce``: run the paper's tables on CIFAR-10 features, resumably.

    dmlp reproduce table5 --smoke                  # every cell tiny: seconds
    dmlp reproduce table1 table5 table7            # the real tables (minutes on 2 cores)
    dmlp reproduce all --results-dir runs/ --seeds 0,1,2
    dmlp reproduce --list

Each finished cell is one JSON file under RESULTS_DIR/<table>/; a rerun skips them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError

__all__ = ["register"]

DEFAULT_RESULTS_DIR = Path("dmlp-results")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..reproduce.cifar_inputs import DEFAULT_CIFAR_ROOT
    from ..reproduce.tables import TABLES
    from .purify import _threads

    p = subparsers.add_parser(
        "reproduce", help="run the paper's tables (1, 5, 7) on the CIFAR-10 features, resumably",
        description="Run a table of the DMLP paper on the shared CIFAR-10 k-means features and print it "
        "beside the paper's numbers. Each cell (one setting and seed) is stored as it finishes, so a rerun "
        "skips finished cells. Tables: " + "; ".join(f"{name}: {spec.title}" for name, spec in TABLES.items()))
    p.add_argument("tables", nargs="*", metavar="TABLE", help=f"{', '.join(TABLES)} or all")
    p.add_argument("--smoke", action="store_true",
                   help="every cell tiny (3,000 training rows, 128 feature dimensions, 4 epochs): a table in "
                   "seconds, to check the pipeline; stored under its own cell ids")
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR, metavar="DIR",
                   help=f"the results store (default: ./{DEFAULT_RESULTS_DIR})")
    p.add_argument("--shared", type=Path, metavar="DIR",
                   help="the shared folder with features/ and data/ (default: $DMLP_SHARED or ../shared)")
    p.add_argument("--cifar-root", type=Path, default=DEFAULT_CIFAR_ROOT, metavar="DIR",
                   help=f"the built CIFAR-10 folder, for the test labels (default: {DEFAULT_CIFAR_ROOT})")
    p.add_argument("--seeds", default="0", metavar="S[,S...]",
                   help="seeds, comma-separated: one cell per setting and seed, averaged in the table (default: 0)")
    p.add_argument("--force", action="store_true", help="recompute cells that are already stored")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables instead of rich ones")
    p.add_argument("--list", action="store_true", help="list the tables and their cells, run nothing")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 ...")
    p.add_argument("--threads", type=_threads, default="auto", metavar="N|auto",
                   help="CPU threads (default: auto, leaving cores other jobs keep busy to them)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds expects integers separated by commas, got {text!r}") from None
    if not seeds:
        raise InputError("--seeds names no seed")
    return list(dict.fromkeys(seeds))


def _table_names(names: list[str]) -> list[str]:
    from ..reproduce.tables import TABLES, get_table

    if not names:
        raise InputError(f"name a table to run ({', '.join(TABLES)} or all), or --list")
    if "all" in names:
        return list(TABLES)
    return [get_table(name).name for name in dict.fromkeys(names)]


def run(args: argparse.Namespace) -> int:
    from ..reproduce import ResultStore, find_shared, load_inputs, run_table
    from ..reproduce.render import FEATURE_NOTE, markdown_table, rich_table, table_rows
    from ..reproduce.tables import FULL, SMOKE, TABLES
    from ..threads import choose_threads, torch_threads
    from .console import console

    if args.list:
        protocol = SMOKE if args.smoke else FULL
        for name, spec in TABLES.items():
            cells = spec.cells(_seeds(args.seeds))
            console.print(f"[bold]{name}[/]: {spec.title} ({len(cells)} cells)", highlight=False)
            for cell in cells:
                console.print(f"  {cell.cell_id(protocol)}", highlight=False)
        return 0
    names = _table_names(args.tables)
    seeds = _seeds(args.seeds)
    store = ResultStore(args.results_dir)
    shared = find_shared(args.shared)
    cache: dict[str, object] = {}

    def inputs():
        # Loaded once, and only if some cell is not stored yet.
        if "inputs" not in cache:
            cache["inputs"] = load_inputs(shared, args.cifar_root)
        return cache["inputs"]

    log = None if not args.no_progress else (lambda line: console.print(line, highlight=False))
    with torch_threads(choose_threads(args.threads)):
        for name in names:
            done = run_table(name, store, inputs, smoke=args.smoke, seeds=seeds, force=args.force,
                             device=args.device, progress=not args.no_progress, log=log)
            head, body = table_rows(done.table, done.records)
            title = done.table.title + (" (smoke)" if args.smoke else "")
            if args.markdown:
                console.print(f"\n### {title}\n", highlight=False, markup=False)
                console.print("\n".join(markdown_table(head, body)), highlight=False, markup=False, soft_wrap=True)
            else:
                console.print(rich_table(title, head, body))
            console.print("Accuracy (%): given and purified labels on the non-trusted rows; linear test: a "
                          "linear classifier trained on the labels, on the test set. " + done.table.paper_caption
                          + " " + FEATURE_NOTE, highlight=False, markup=False)
            console.print(f"{done.computed} cell(s) computed, {done.skipped} from the store, "
                          f"{done.seconds:.1f} s; cells in {store.root / name}", highlight=False)
    return 0
