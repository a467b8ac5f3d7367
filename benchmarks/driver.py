"""What every benchmark script shares, in one place: paths, the run context a RESULTS.md
section records, writing one section of RESULTS.md, atomic caches, common options, and
timing helpers. Not part of the package.

Each script in ``benchmarks/`` imports it as ``driver``. Python puts a script's own folder
first on ``sys.path``, so ``python benchmarks/NAME.py`` finds it (and a worker it spawns
inherits that path); tests put ``benchmarks/`` on ``sys.path`` themselves. Importing it
loads neither torch nor the package's data readers, so ``suite.py run`` stays light; what
needs them is imported where it is used.

- Paths: :data:`ROOT`, :data:`RESULTS`, :data:`CACHE` (``$DMLP_BENCH_CACHE``, default
  ``.bench-cache/``), :data:`CIFAR_ROOT` (``$DMLP_CIFAR_ROOT``), :data:`CIFAR_N`
  (``$DMLP_CIFAR_N``), :func:`shared_dir` (``$DMLP_SHARED``, default ``../shared``).
- Run context: :func:`timestamp`, :func:`git_revision`, :func:`load_average`,
  :func:`threads_text`, :func:`command_line`, :func:`run_header`, :func:`run_context`.
- RESULTS.md: :class:`Section` (the text between ``<!-- NAME:start -->`` and
  ``<!-- NAME:end -->``, written by :func:`results_file.write_section`),
  :func:`markdown_table`, :func:`print_table`.
- Caches: :func:`read_json`, :func:`write_json`, :func:`write_npy`, :func:`write_npz`, each
  write atomic (``dmlp_plugin.atomic.atomic_write``).
- Options: :func:`comma_list`, :func:`add_protocol` / :func:`parse_protocol`,
  :func:`add_shared`, :func:`add_cifar`, :func:`add_threads`, :func:`add_write_results`, :func:`add_no_write`.
- Inputs and timing: :func:`load_train`, :func:`use_threads`, :func:`start_run` /
  :func:`end_run`, :func:`warm_up`, :func:`rss_bytes`, :func:`run_child`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import numpy as np

from dmlp_plugin.atomic import atomic_write
from results_file import write_section

__all__ = [
    "HERE", "ROOT", "RESULTS", "CACHE", "CIFAR_ROOT", "CIFAR_N", "SHARED", "shared_dir",
    "timestamp", "git_revision", "load_average", "threads_text", "command_line", "run_header", "run_context",
    "Section", "write_section", "markdown_table", "print_table",
    "read_json", "write_json", "write_npy", "write_npz",
    "comma_list", "add_protocol", "parse_protocol", "add_shared", "add_cifar", "add_threads", "add_write_results",
    "add_no_write",
    "load_train", "use_threads", "start_run", "end_run", "warm_up", "rss_bytes", "run_child",
]

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
#: Features, noise draws and finished runs the benchmarks cache (git-ignored).
CACHE = Path(os.environ.get("DMLP_BENCH_CACHE", ROOT / ".bench-cache"))
#: The built CIFAR-10 folder (``cifar-10-batches-py`` inside), as ``dmlp`` builds it.
CIFAR_ROOT = Path(os.environ.get("DMLP_CIFAR_ROOT", Path.home() / ".cache" / "dmlp" / "cifar10"))
#: CIFAR-10N's human labels, ``CIFAR-10_human.pt`` from github.com/UCSC-REAL/cifar-10-100n.
CIFAR_N = Path(os.environ.get("DMLP_CIFAR_N",
                             Path.home() / ".cache" / "dmlp" / "cifar-n" / "CIFAR-10_human.pt"))


def shared_dir(explicit: Path | None = None) -> Path:
    """The developers' shared folder: ``explicit``, else ``$DMLP_SHARED``, else ``../shared``
    beside the repository (read at call time, so a test may set the variable)."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get("DMLP_SHARED") or ROOT.parent / "shared")


SHARED = shared_dir()


# -- run context ----------------------------------------------------------------------------


def timestamp(moment: datetime.datetime | None = None) -> str:
    """``YYYY-MM-DD HH:MM`` of ``moment`` (default: now), as every section dates its run."""
    return f"{moment or datetime.datetime.now():%Y-%m-%d %H:%M}"


def git_revision() -> str:
    """``git describe --always --dirty`` of this checkout (``-dirty``: uncommitted changes;
    ``"unknown"`` without git). The package's helper, pointed at the benchmarks' checkout."""
    from dmlp_plugin.reproduce.cifar_inputs import git_revision as describe

    return describe(ROOT)


def load_average() -> str:
    """The 1, 5 and 15-minute load averages as ``"a / b / c"`` (``"n/a"`` where there are none):
    other jobs on the cores make wall times upper bounds, so every section records it."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def threads_text() -> str:
    """``"N torch thread(s)"``: the thread count torch uses now."""
    import torch

    n = torch.get_num_threads()
    return f"{n} torch thread" + ("s" if n != 1 else "")


def command_line(script: str, argv: list[str] | None, prefix: str = "python") -> str:
    """The command that repeats a run: ``PREFIX benchmarks/SCRIPT`` and its arguments
    (``argv``, else this process's)."""
    return f"{prefix} benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv)


def run_header(title: str, rep: Any, note: str) -> list[str]:
    """The opening lines of a timed run's section: ``title``, then ``Run STARTED on N CPU cores
    (cpu), torch V (threads), Python V, dmlp-plugin at `REV`. Load average (1/5/15 min) at start
    A, at end B`` + ``note`` + ``Whole run: M min. Command:``, and the command. ``rep`` has
    ``started``, ``load_start``, ``load_end``, ``total_s`` and ``args.command``."""
    import torch

    cpu = platform.processor() or platform.machine()
    return [title, "",
            f"Run {rep.started} on {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__} "
            f"({threads_text()}), Python {platform.python_version()}, dmlp-plugin at `{git_revision()}`. "
            f"Load average (1/5/15 min) at start {rep.load_start}, at end {rep.load_end}{note} "
            f"Whole run: {rep.total_s / 60:.1f} min. Command:", "", f"    {rep.args.command}", ""]


def run_context(script: str, began: datetime.datetime, load_start: str, argv: list[str] | None) -> tuple[str, str]:
    """The sentence that dates a run (cores, revision, load at start and end) and the command
    that repeats it, for a RESULTS.md section."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    sentence = (f"Run {timestamp(began)} on {cores} CPU cores, dmlp-plugin at `{git_revision()}`; load average "
                f"(1/5/15 min) at start {load_start}, at end {load_average()}.")
    return sentence, command_line(script, argv).strip()


# -- RESULTS.md -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One script's section of RESULTS.md: the text from ``<!-- NAME:start -->`` to
    ``<!-- NAME:end -->``, markers included. Writing it leaves every other section alone."""

    name: str

    @property
    def start(self) -> str:
        return f"<!-- {self.name}:start -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"

    def wrap(self, lines: Iterable[str]) -> str:
        """``lines`` between the markers, one a line."""
        return "\n".join([self.start, *lines, self.end])

    def wrap_run(self, title: str, context: tuple[str, str], text: str, table: list[str],
                 after: Iterable[str] = ()) -> str:
        """A section that opens with :func:`run_context`'s ``(sentence, command)``: the title, the
        sentence and ``text``, the command, the table, then ``after``."""
        sentence, command = context
        return self.wrap([title, "", f"{sentence} {text}", "", "    " + command, "", *table, "", *after])

    def emit(self, text: str, *, write: bool, path: Path = RESULTS) -> None:
        """Print ``text``, and write it (scripts that write unless told ``--no-write``)."""
        print(text)
        if write:
            self.write(text, path)

    def write(self, text: str, path: Path = RESULTS, *, quiet: bool = False) -> None:
        """Put ``text`` (from :meth:`wrap`) in place of this section of ``path``, atomically,
        or append it; say so unless ``quiet`` (a section rewritten after every finished run)."""
        write_section(path, text, self.start, self.end)
        if not quiet:
            print(f"wrote the {self.name} section of {path}")


def markdown_table(head: list[str], body: list[list[str]]) -> list[str]:
    """Lines of a GitHub Markdown table (the package's, as ``dmlp reproduce`` writes them)."""
    from dmlp_plugin.reproduce.render import markdown_table as lines

    return lines(head, body)


def print_table(title: str, head: list[str], body: list[list[str]]) -> None:
    """A table on the terminal (rich), without Markdown's ``**`` and backticks."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped to a file: do not wrap at 80 columns
        console = Console(width=200)
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(head):
        table.add_column(name.replace("**", ""), justify="left" if i < 2 else "right")
    for row in body:
        table.add_row(*[cell.replace("**", "").replace("`", "") for cell in row])
    console.print(table)


# -- caches -------------------------------------------------------------------------------------


def read_json(path: Path) -> Any | None:
    """What the JSON file ``path`` holds, or None when it is missing or unreadable: a cache
    miss, so the run is made again."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json(path: Path, obj: Any, *, indent: int | None = None) -> None:
    """Write ``obj`` as JSON, atomically (parents made): a killed run or a second process
    never leaves a half-written file where a reader would take it for a result."""
    with atomic_write(path, "w") as fh:
        fh.write(json.dumps(obj, indent=indent))


def write_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path``, atomically (parents made)."""
    with atomic_write(path, "wb") as fh:
        np.save(fh, array)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` of ``arrays`` to ``path``, atomically (parents made)."""
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)


# -- options ------------------------------------------------------------------------------------


def comma_list(text: str, kind: Callable[[str], T] = str) -> list[T]:
    """``"a, b,,c"`` -> ``[kind("a"), kind("b"), kind("c")]``; ``""`` is the empty list."""
    return [kind(part.strip()) for part in text.split(",") if part.strip()]


def add_protocol(p: argparse.ArgumentParser, *, seeds: str = "0", seeds_help: str = "seeds, comma-separated",
                 cifar_n_keys: bool = False, epochs: bool = True) -> None:
    """The options of the CIFAR-10 protocol (``purify_cifar10.py`` and the scripts that reuse its
    inputs): the shared folder, the noise, the draws, the trusted set, a development subset, and
    paper mode's epochs. :func:`parse_protocol` turns them into lists."""
    add_shared(p)
    p.add_argument("--rates", default="0.2,0.5,0.8,0.9", help="symmetric noise rates, comma-separated")
    p.add_argument("--asym-rates", default="0.2,0.4", help="asymmetric CIFAR-10 noise rates ('' to skip)")
    if cifar_n_keys:
        p.add_argument("--cifar-n-keys", default="aggre_label,random_label1,worse_label",
                       help="CIFAR-10N label sets ('' to skip)")
    p.add_argument("--seeds", default=seeds, help=seeds_help)
    p.add_argument("--trusted", type=int, default=1000, help="size of the trusted set")
    if epochs:
        p.add_argument("--epochs", type=int, default=None,
                       help="paper mode's epochs (default 100; the default pipeline has none)")
    p.add_argument("--subset", type=int, default=None, help="a random subset of the training set (development)")


def parse_protocol(args: argparse.Namespace) -> None:
    """``rate_list``, ``asym_list``, ``seed_list`` (and ``key_list``) from :func:`add_protocol`'s options."""
    args.rate_list = comma_list(args.rates, float)
    args.asym_list = comma_list(args.asym_rates, float)
    args.seed_list = comma_list(args.seeds, int)
    if hasattr(args, "cifar_n_keys"):
        args.key_list = comma_list(args.cifar_n_keys)


def add_shared(p: argparse.ArgumentParser) -> None:
    """``--shared``: the developers' shared folder (:func:`shared_dir` resolves the default)."""
    p.add_argument("--shared", type=Path, default=None, help="the shared folder (default: $DMLP_SHARED or ../shared)")


def add_cifar(p: argparse.ArgumentParser, *, cifar_n: Path | None = CIFAR_N) -> None:
    """``--cifar-root`` (the built CIFAR-10 folder) and ``--cifar-n`` (CIFAR-10N's human labels)."""
    p.add_argument("--cifar-root", type=Path, default=CIFAR_ROOT, help="folder holding the built cifar-10-batches-py")
    p.add_argument("--cifar-n", type=Path, default=cifar_n,
                   help=f"CIFAR-10_human.pt, CIFAR-10N's human labels (default: {CIFAR_N})")


def add_threads(p: argparse.ArgumentParser, default: int | None, help: str = "torch CPU threads") -> None:
    """``--threads``: on cores other jobs share, 1 keeps OpenMP threads from waiting on each other."""
    p.add_argument("--threads", type=int, default=default, help=help)


def add_write_results(p: argparse.ArgumentParser, section: Section) -> None:
    """``--write-results``: rewrite the script's section of RESULTS.md (else only print)."""
    p.add_argument("--write-results", action="store_true",
                   help=f"rewrite the {section.name} section of benchmarks/RESULTS.md")


def add_no_write(p: argparse.ArgumentParser) -> None:
    """``--no-write``: print the section without writing it (scripts that write by default)."""
    p.add_argument("--no-write", action="store_true", help="print the RESULTS.md section instead of writing it")


# -- inputs and timing ------------------------------------------------------------------------


def use_threads(threads: int | None) -> None:
    """Set torch's CPU thread count, when one is given (else torch's choice stands)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def start_run(threads: int | None) -> tuple[float, str, str]:
    """The start of a timed run: :func:`use_threads`, then ``(perf_counter, timestamp, load average)``."""
    use_threads(threads)
    return time.perf_counter(), timestamp(), load_average()


def end_run(rep: Any, t0: float, tables: Iterable[tuple[str, list[str], list[list[str]]]],
            section: Section | None, render: Callable[[Any], str]) -> None:
    """The end of a timed run: ``rep.load_end`` and ``rep.total_s`` set (``t0`` from
    :func:`start_run`), each ``(title, head, body)`` table printed, ``render(rep)`` written
    into ``section`` (None: not asked to), and the total time and load printed."""
    rep.load_end, rep.total_s = load_average(), time.perf_counter() - t0
    for title, head, body in tables:
        print_table(title, head, body)
    if section is not None:
        section.write(render(rep))
    print(f"total {rep.total_s / 60:.1f} min, load average {rep.load_start} → {rep.load_end}")


def load_train(shared: Path, subset: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The shared CIFAR-10 k-means training features (float32) and clean labels, or exit
    naming what is missing (no test set needed).

    ``subset``: a fixed random subset of that many rows, for development.
    """
    from dmlp_plugin.reproduce.cifar_inputs import FEATURES, TRAIN_LABELS

    feats_path, labels_path = shared / FEATURES, shared / TRAIN_LABELS
    missing = [p for p in (feats_path, labels_path) if not p.is_file()]
    if missing:
        raise SystemExit("missing shared input(s): " + ", ".join(map(str, missing))
                         + "\n(set DMLP_SHARED or --shared to the folder that holds features/ and data/)")
    with np.load(feats_path) as z:
        train = z["train"].astype(np.float32)
    clean = np.load(labels_path).astype(np.int64)
    if subset and subset < len(clean):
        rows = np.sort(np.random.default_rng(12345).permutation(len(clean))[:subset])
        train, clean = train[rows], clean[rows]
    return train, clean


def warm_up() -> None:
    """One tiny purification in each mode, so no timed run pays for first-call overheads."""
    from dmlp_plugin import PurifyConfig, purify_dataset

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 32)).astype(np.float32)
    y = rng.integers(0, 10, 1200)
    idx = np.arange(0, 1200, 6)
    y[idx] = np.arange(len(idx)) % 10
    for config in (PurifyConfig(rounds=1), PurifyConfig.paper(epochs=2)):
        purify_dataset(x, y, threads=None, val_indices=idx, val_labels=y[idx], num_classes=10, config=config,
                       device="cpu")


def rss_bytes() -> tuple[int, int]:
    """``(current, peak)`` resident set size of this process in bytes.

    From ``/proc/self/status`` (``VmRSS``, ``VmHWM``): ``VmHWM`` starts afresh at ``exec``,
    while ``ru_maxrss`` carries the high-water mark of the process a child was forked from
    (say, the parent that wrote a 4 GB file). Elsewhere ``ru_maxrss`` stands in for both.
    """
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return peak, peak


def run_child(args: list[str], *, env: dict[str, str] | None = None) -> dict:
    """Run ``python ARGS`` in a fresh process (thread pools and peak memory of its own) and
    return the JSON object it printed last.

    Raises
    ------
    RuntimeError
        The process failed; the message ends with the last 3,000 characters of its stderr.
    """
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"python {' '.join(args)} failed (status {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
