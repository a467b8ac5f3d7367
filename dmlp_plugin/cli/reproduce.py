"""``dmlp reproduce``: run the paper's tables on CIFAR-10 features, resumably.

    dmlp reproduce table5 --smoke                  # every cell tiny: seconds
    dmlp reproduce table1 table5 table7            # the real tables (minutes on 2 cores)
    dmlp reproduce all --results-dir runs/ --seeds 0,1,2
    dmlp reproduce --list
    dmlp reproduce table4 --upstream-root ~/src --data ~/data --methods coteaching --rates 0.8   # GPU
    dmlp reproduce table4 --smoke --upstream-root ~/src --methods coteaching,cdr --rates 0.8     # CPU, minutes
    dmlp reproduce table8 --source r18-simclr=simclr.pt                                        # feature sources

Each finished cell is one JSON file under RESULTS_DIR/<table>/; a rerun skips them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError

__all__ = ["register"]

DEFAULT_RESULTS_DIR = Path("dmlp-results")


def register(subparsers: argparse._SubParsersAction) -> None:
    # Nothing heavy here: `dmlp --help` builds every parser, and must not load torch.
    from ..reproduce.local_inputs import DEFAULT_CIFAR_ROOT
    from .purify import _threads

    p = subparsers.add_parser(
        "reproduce",
        help="run the paper's tables (1, 5, 7 on features; 4, 1-DivideMix, 8 with upstreams/GPU), resumably",
        description="Run a table of the DMLP paper on CIFAR-10 features and print it beside the paper's numbers. "
        "The features are --features FILE, or k-means features computed from the CIFAR-10 images in --cifar-root "
        "(once, then cached; a --smoke run computes small ones of its rows in seconds). Each cell (one setting "
        "and seed) is stored as it finishes, so a rerun skips finished cells. Tables: table1, table5, table7 "
        "(a linear classifier on the labels, the IPC/EAC ablation, the trusted-set size; CPU), table4 and "
        "table1-dividemix (upstream LNL methods with and without --dmlp; GPU), table8 (feature sources, "
        "--source). `all` is the CPU tables; --list shows every cell.")
    p.add_argument("tables", nargs="*", metavar="TABLE",
                   help="table1, table5, table7, table4, table1-dividemix, table8, or all (the CPU tables)")
    p.add_argument("--smoke", action="store_true",
                   help="every cell tiny (3,000 training rows, 128 feature dimensions, 4 epochs): a table in "
                   "seconds, to check the pipeline; stored under its own cell ids")
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR, metavar="DIR",
                   help=f"the results store (default: ./{DEFAULT_RESULTS_DIR})")
    p.add_argument("--cifar-root", type=Path, default=DEFAULT_CIFAR_ROOT, metavar="DIR",
                   help="the folder holding cifar-10-batches-py: its labels, and its images for the k-means "
                   f"features when no --features is given (default: {DEFAULT_CIFAR_ROOT}); "
                   "`dmlp data cifar10 --from-folder IMAGES DIR` builds one from image files")
    p.add_argument("--features", type=Path, metavar="FILE",
                   help="features .npz with arrays train (50000, d) and test (10000, d) in CIFAR-10 order (e.g. "
                   "from `dmlp features --split train,test`), instead of k-means features of --cifar-root")
    p.add_argument("--shared", type=Path, metavar="DIR",
                   help="a folder of precomputed k-means features (features/cifar10_kmeans_pca512.npz and "
                   "data/cifar10/train_labels_original_order.npy; default: $DMLP_SHARED when set)")
    p.add_argument("--seeds", default="0", metavar="S[,S...]",
                   help="seeds, comma-separated: one cell per setting and seed, averaged in the table (default: 0)")
    p.add_argument("--force", action="store_true", help="recompute cells that are already stored")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables instead of rich ones")
    p.add_argument("--list", action="store_true", help="list the tables and their cells, run nothing")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 ...")
    p.add_argument("--threads", type=_threads, default="auto", metavar="N|auto",
                   help="CPU threads (default: auto, leaving cores other jobs keep busy to them)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per cell instead)")
    g = p.add_argument_group("upstream tables (table4, table1-dividemix)")
    g.add_argument("--upstream-root", type=Path, metavar="DIR",
                   help="folder holding the upstream clones DivideMix/, ELR/, CDR/, Co-teaching/ (default: "
                   "$DMLP_UPSTREAM_ROOT); each is copied under RESULTS_DIR/upstream and integrated there")
    g.add_argument("--data", type=Path, metavar="DIR",
                   help="CIFAR-10 folder (holding cifar-10-batches-py) the upstreams train on (default: --cifar-root)")
    g.add_argument("--methods", metavar="M[,M...]", help="only these methods (e.g. coteaching,cdr)")
    g.add_argument("--rates", metavar="R[,R...]", help="only these noise rates (default: 0.2,0.5,0.8,0.9)")
    g.add_argument("--cells", metavar="GLOB", help="only cells whose key matches, e.g. 'coteaching_sym80_*'")
    g.add_argument("--epochs", type=int, metavar="N", help="train each run for N epochs (default: the upstream's own)")
    g.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop each run after this long and keep its last test evaluation")
    g.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at once (default: 1)")
    g.add_argument("--mode", choices=("default", "paper"), default="default",
                   help="purifier mode of the --dmlp files (default: default)")
    g.add_argument("--in-place", action="store_true",
                   help="integrate and train in the clones under --upstream-root instead of copies")
    g.add_argument("--source", action="append", default=[], metavar="NAME=FILE",
                   help="table8: a feature source, features .npz (train, test) or a checkpoint; names r18-moco, "
                   "r18-simclr, r50-simclr get the paper's figures (repeatable)")
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
    from ..reproduce.upstream import UPSTREAM_TABLES

    extra = [*UPSTREAM_TABLES, "table8"]
    if not names:
        raise InputError(f"name a table to run ({', '.join([*TABLES, *extra])} or all), or --list")
    if "all" in names:
        return list(TABLES)
    return [name if name in extra else get_table(name).name for name in dict.fromkeys(names)]


def _rates(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise InputError(f"--rates expects numbers separated by commas, got {text!r}") from None
    if not rates or any(not 0 <= r < 1 for r in rates):
        raise InputError(f"--rates expects noise rates in [0, 1), got {text!r}")
    return rates


def _upstream_root(args: argparse.Namespace) -> Path:
    import os

    root = args.upstream_root or (Path(os.environ["DMLP_UPSTREAM_ROOT"]) if os.environ.get("DMLP_UPSTREAM_ROOT")
                                  else None)
    if root is None:
        raise InputError("the upstream tables need --upstream-root DIR (or $DMLP_UPSTREAM_ROOT): a folder holding "
                         "DivideMix/, ELR/, CDR/, Co-teaching/")
    return Path(root).expanduser()


class _Inputs:
    """The run's inputs, settled per kind of protocol when a table first asks, and loaded
    (with a line saying what they are) only when some cell must be computed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plans: dict[tuple, object] = {}

    def plan(self, protocol=None, *, all_rows: bool = False):
        from ..errors import MissingFileError
        from ..reproduce.local_inputs import InputsPlan, plan_inputs

        smoke = bool(protocol is not None and protocol.smoke)
        rows = None if all_rows or protocol is None else (protocol.train_rows, protocol.test_rows)
        key = (smoke, rows)
        if key not in self.plans:
            a = self.args
            try:
                self.plans[key] = plan_inputs(cifar_root=a.cifar_root, features=a.features, shared=a.shared,
                                              protocol=protocol, all_rows=all_rows, progress=not a.no_progress)
            except MissingFileError as exc:
                if a.features is not None or a.shared is not None:
                    raise  # what the user named is not there
                # Finished tables print without any inputs; a cell to compute raises this then.
                self.plans[key] = InputsPlan("missing", "", "unavailable", _raiser(exc))
        return self.plans[key]

    def loader(self, plan):
        from .console import console

        def load():
            if plan.kind != "missing" and not plan.loaded:
                console.print(plan.line, highlight=False, markup=False, soft_wrap=True)  # one line, in logs too
            return plan.load()

        return load


def _raiser(exc: Exception):
    def load():
        raise exc

    return load


def _run_upstream(name: str, args: argparse.Namespace, seeds: list[int], store, inputs: _Inputs, log) -> None:
    from ..reproduce.tables import SMOKE
    from ..reproduce.upstream import UpstreamInputs, UpstreamProtocol, run_upstream_table, upstream_rows
    from .console import console

    plan = inputs.plan(SMOKE if args.smoke else None, all_rows=True)
    protocol = UpstreamProtocol(smoke=args.smoke, epochs=args.epochs, time_limit=args.time_limit, mode=args.mode,
                                features=plan.tag)
    if args.jobs < 1:
        raise InputError("--jobs must be at least 1")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    load = inputs.loader(plan)
    upstream = lambda: UpstreamInputs.from_plan(  # noqa: E731
        _Loaded(plan, load), _upstream_root(args), args.data or args.cifar_root, in_place=args.in_place)
    done = run_upstream_table(name, store, upstream, protocol=protocol, seeds=seeds, methods=methods,
                              rates=_rates(args.rates), cells=args.cells, force=args.force, jobs=args.jobs,
                              device=args.device, log=log or (lambda line: console.print(line, highlight=False)))
    head, body = upstream_rows(done.records)
    title = done.table.title + (" (smoke)" if args.smoke else "")
    _print_table(title, head, body, markdown=args.markdown)
    console.print("Test accuracy (%) of the upstream's own final evaluation (Last) and its best over epochs; "
                  "purified labels: their accuracy on the non-trusted rows; --dmlp injected: the parts the run "
                  "recorded in dmlp-record.json. " + done.table.caption
                  + (" Smoke runs stop after a few iterations: their numbers mean nothing." if args.smoke else ""),
                  highlight=False, markup=False)
    console.print(f"{done.computed} cell(s) computed, {done.skipped} from the store, {done.seconds:.1f} s; cells in "
                  f"{store.root / name}", highlight=False)


class _Loaded:
    """A plan whose ``load`` also says, once, where the inputs come from."""

    def __init__(self, plan, load) -> None:
        self.tag, self.load = plan.tag, load


def _run_table8(args: argparse.Namespace, seeds: list[int], store, inputs: _Inputs, log) -> None:
    from ..reproduce.feature_tables import missing_sources, parse_sources, run_table8
    from ..reproduce.render import table_rows
    from ..reproduce.tables import RATES, SMOKE
    from .console import console

    sources = parse_sources(args.source)
    plan = inputs.plan(SMOKE if args.smoke else None, all_rows=True)
    done = run_table8(store, sources, inputs.loader(plan), cifar_root=args.data or args.cifar_root, smoke=args.smoke,
                      seeds=seeds, rates=_rates(args.rates) or RATES, force=args.force, device=args.device,
                      kmeans_tag=plan.tag, log=log)
    head, body = table_rows("table8", done.records)
    title = done.table.title + (" (smoke)" if args.smoke else "")
    _print_table(title, head, body, markdown=args.markdown)
    for line in missing_sources(sources):
        console.print(line, highlight=False, markup=False)
    console.print(done.table.paper_caption, highlight=False, markup=False)
    console.print(f"{done.computed} cell(s) computed, {done.skipped} from the store, {done.seconds:.1f} s; cells in "
                  f"{store.root / 'table8'}", highlight=False)


def run(args: argparse.Namespace) -> int:
    from ..reproduce.local_inputs import with_features
    from ..reproduce.render import FEATURE_NOTE, table_rows
    from ..reproduce.runner import run_table
    from ..reproduce.store import ResultStore
    from ..reproduce.tables import FULL, SMOKE
    from ..reproduce.upstream import UPSTREAM_TABLES
    from ..threads import choose_threads, torch_threads
    from .console import console

    if args.list:
        _list(args)
        return 0
    names = _table_names(args.tables)
    seeds = _seeds(args.seeds)
    store = ResultStore(args.results_dir)
    # what the CLI says on Ctrl-C: cells are written whole as they finish
    args.interrupted = f"interrupted; the cells finished so far are kept in {store.root}, and a rerun continues"
    inputs = _Inputs(args)
    log = None if not args.no_progress else (lambda line: console.print(line, highlight=False))
    with torch_threads(choose_threads(args.threads)):
        for name in names:
            if name in UPSTREAM_TABLES:
                _run_upstream(name, args, seeds, store, inputs, log)
                continue
            if name == "table8":
                _run_table8(args, seeds, store, inputs, log)
                continue
            plan = inputs.plan(SMOKE if args.smoke else FULL)
            protocol = with_features(SMOKE if args.smoke else FULL, plan)
            done = run_table(name, store, inputs.loader(plan), protocol=protocol, seeds=seeds, force=args.force,
                             device=args.device, progress=not args.no_progress, log=log)
            head, body = table_rows(done.table, done.records)
            title = done.table.title + (" (smoke)" if args.smoke else "")
            _print_table(title, head, body, markdown=args.markdown)
            console.print("Accuracy (%): given and purified labels on the non-trusted rows; linear test: a "
                          "linear classifier trained on the labels, on the test set. " + done.table.paper_caption
                          + " " + FEATURE_NOTE, highlight=False, markup=False)
            console.print(f"{done.computed} cell(s) computed, {done.skipped} from the store, "
                          f"{done.seconds:.1f} s; cells in {store.root / name}", highlight=False)
    return 0


def _list(args: argparse.Namespace) -> None:
    from ..reproduce.feature_tables import PAPER_SOURCES, parse_sources, table8_cells
    from ..reproduce.tables import FULL, SMOKE, TABLES
    from ..reproduce.upstream import UPSTREAM_TABLES, UpstreamProtocol
    from .console import console

    protocol = SMOKE if args.smoke else FULL
    for name, spec in TABLES.items():
        cells = spec.cells(_seeds(args.seeds))
        console.print(f"[bold]{name}[/]: {spec.title} ({len(cells)} cells)", highlight=False)
        for cell in cells:
            console.print(f"  {cell.cell_id(protocol)}", highlight=False)
    up = UpstreamProtocol(smoke=args.smoke, epochs=args.epochs, time_limit=args.time_limit, mode=args.mode)
    for name, table in UPSTREAM_TABLES.items():
        cells = table.cells(_seeds(args.seeds), rates=_rates(args.rates))
        console.print(f"[bold]{name}[/]: {table.title} ({len(cells)} cells, GPU)", highlight=False)
        for cell in cells:
            console.print(f"  {cell.cell_id(up)}", highlight=False)
    sources = ["kmeans", *parse_sources(args.source)]
    cells = table8_cells(sources, _seeds(args.seeds), _rates(args.rates) or (0.2, 0.5, 0.8, 0.9))
    console.print(f"[bold]table8[/]: feature sources ({len(cells)} cells for {', '.join(sources)}; "
                  f"the paper's rows come from --source {', '.join(f'{k}=FILE' for k in PAPER_SOURCES)})",
                  highlight=False)
    for _, cell in cells:
        console.print(f"  {cell.key}_s{cell.seed}", highlight=False)


def _print_table(title: str, head: list[str], body: list[list[str]], *, markdown: bool) -> None:
    """A results table: Markdown (for RESULTS.md) or a rich table."""
    from ..reproduce.render import markdown_table, rich_table
    from .console import console

    if markdown:
        console.print(f"\n### {title}\n", highlight=False, markup=False)
        console.print("\n".join(markdown_table(head, body)), highlight=False, markup=False, soft_wrap=True)
    else:
        console.print(rich_table(title, head, body))
