"""The GPU tables of ``dmlp reproduce``: integrated upstream LNL methods with and without ``--dmlp``.

``table4`` (Co-teaching, CDR, ELR+) and ``table1-dividemix`` (DivideMix) train each method
on CIFAR-10 at symmetric 20/50/80/90% noise twice: on its own noisy labels, and with
``--dmlp PURIFIED.npz``. A cell is one training run:

1. a copy of the user's clone (``--upstream-root DIR/<Folder>``), made once per method under
   ``RESULTS_DIR/upstream/`` and integrated with ``dmlp integrate`` (the user's clone is
   left alone unless ``in_place``), with CIFAR-10 written in the layout it reads;
2. for a ``--dmlp`` cell, a purified file made once per (rate, seed, mode) from the
   features, the DivideMix-convention noise and a 1,000-sample trusted set
   (``RESULTS_DIR/<table>/inputs/``); DivideMix reads that very noise file;
3. the upstream's own command through ``dmlp run`` (``integrations/launch.py``), its output
   in ``RESULTS_DIR/<table>/runs/<cell id>/log.txt``;
4. the test accuracy parsed from the log (:mod:`dmlp_plugin.reproduce.logs`) and, for a
   ``--dmlp`` cell, the injection the run recorded (``dmlp-record.json``), stored as one JSON
   file per cell in the same :class:`ResultStore` as the CPU tables.

``UpstreamProtocol(epochs=N)`` shortens every run to N training epochs (through the
method's own epoch option, or an iteration budget aligned to whole epochs, so the last
epoch is still evaluated), ``time_limit`` stops a run after that many seconds and keeps its
last evaluation, and ``smoke=True`` runs each cell for a few iterations on the CPU.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DmlpError, InputError, MissingFileError
from . import paper as P
from .cifar_inputs import FEATURES, NUM_CLASSES, TRAIN_LABELS, draw_trusted, noisy_labels, with_epochs
from .logs import parse_cdr_results, parse_log
from .render import mean_std
from .store import ResultStore, make_cell_id, record_header
from .tables import RATES

__all__ = ["UpstreamRunError", "UpstreamProtocol", "UpstreamCell", "UpstreamTable", "UPSTREAM_TABLES",
           "FOLDERS", "DISPLAY", "ITERS_PER_EPOCH", "UpstreamInputs", "UpstreamRun", "UpstreamCommand",
           "run_upstream_table", "upstream_rows"]

#: The folder each upstream's clone has under ``--upstream-root``.
FOLDERS = {"dividemix": "DivideMix", "elr_plus": "ELR", "cdr": "CDR", "coteaching": "Co-teaching"}
#: The paper's names.
DISPLAY = {"dividemix": "DivideMix", "elr_plus": "ELR+", "cdr": "CDR", "coteaching": "Co-teaching"}
#: Training batches per epoch on CIFAR-10 where the epoch count is forced by the script
#: (Co-teaching: 50,000 / 128, last batch dropped; CDR: 45,000 / 64, last batch kept).
ITERS_PER_EPOCH = {"coteaching": 390, "cdr": 704}
#: Upstream seeds: the script's default plus the cell's seed.
_SEED_BASE = {"coteaching": 1, "cdr": 1, "elr_plus": 123}


class UpstreamRunError(DmlpError):
    """An upstream training run failed, or left out what a cell needs."""


@dataclass(frozen=True)
class UpstreamProtocol:
    """How long every run of an upstream table is, and how its purified labels are made.

    ``epochs``: train each run for this many epochs (``None``: the upstream's own, 200 to
    300); ``time_limit``: stop a run after this many seconds and keep its last evaluation
    (``None``: no limit); ``smoke``: a few iterations on the CPU, purified labels from a
    short purification of the first 128 feature dimensions; ``mode``: the purifier mode of
    the ``--dmlp`` files (``default`` or ``paper``); ``num_trusted``: trusted-set size;
    ``features``: which features were purified (a name, hashed into the ids).
    """

    smoke: bool = False
    epochs: int | None = None
    time_limit: float | None = None
    mode: str = "default"
    num_trusted: int = 1000
    features: str = "cifar10_kmeans_pca512"

    def __post_init__(self) -> None:
        if self.mode not in ("default", "paper"):
            raise InputError(f"purifier mode must be default or paper, got {self.mode!r}")
        if self.epochs is not None and self.epochs < 1:
            raise InputError("--epochs must be at least 1")
        if self.time_limit is not None and self.time_limit <= 0:
            raise InputError("--time-limit must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def purify_config(self):
        from ..config import PurifyConfig

        config = PurifyConfig.paper() if self.mode == "paper" else PurifyConfig()
        if not self.smoke:
            return config
        # A smoke run checks the wiring: 3 purification epochs, and 2 of the network
        # candidate's, dealt once.
        config = with_epochs(config, 3)
        network = isinstance(config, PurifyConfig) and config.mlp_candidate
        return config.replace(mlp_epochs=2, mlp_repeats=1) if network else config


@dataclass(frozen=True)
class UpstreamCell:
    """One training run: an upstream ``method`` at symmetric ``rate``, with ``--dmlp`` or not."""

    table: str
    method: str
    rate: float
    dmlp: bool
    seed: int
    paper: float | None = None
    paper_best: float | None = None
    paper_ref: str = ""

    @property
    def key(self) -> str:
        return f"{self.method}_sym{round(100 * self.rate)}_{'dmlp' if self.dmlp else 'noisy'}"

    @property
    def panel(self) -> str:
        return f"sym {self.rate:.0%}"

    @property
    def series(self) -> str:
        return ("DMLP-" if self.dmlp else "") + DISPLAY[self.method]

    def settings(self, protocol: UpstreamProtocol) -> dict[str, Any]:
        """Everything that determines the result (hashed into the id). The purifier settings
        only matter with ``--dmlp``."""
        out = {"table": self.table, "method": self.method, "rate": self.rate, "dmlp": self.dmlp, "seed": self.seed,
               "noise": "symmetric", "smoke": protocol.smoke, "epochs": protocol.epochs,
               "time_limit": protocol.time_limit}
        if self.dmlp:
            out.update(mode=protocol.mode, num_trusted=protocol.num_trusted, features=protocol.features,
                       config=protocol.purify_config().to_dict())
        return out

    def cell_id(self, protocol: UpstreamProtocol) -> str:
        return make_cell_id(("smoke_" if protocol.smoke else "") + f"{self.key}_s{self.seed}", self.settings(protocol))


@dataclass(frozen=True)
class UpstreamTable:
    name: str
    title: str
    methods: tuple[str, ...]
    paper: dict[str, dict[str, dict[float, float]]]
    paper_ref: str
    caption: str

    def cells(self, seeds: Sequence[int] = (0,), *, methods: Sequence[str] | None = None,
              rates: Sequence[float] | None = None) -> list[UpstreamCell]:
        """Cells in table order: method, rate, without then with ``--dmlp``, seed."""
        chosen = [m for m in self.methods if methods is None or m in methods]
        out = []
        for method in chosen:
            for rate in (rates or RATES):
                for dmlp in (False, True):
                    name = ("DMLP-" if dmlp else "") + DISPLAY[method]
                    figures = self.paper.get(name, {})
                    for seed in seeds:
                        out.append(UpstreamCell(self.name, method, float(rate), dmlp, seed,
                                                figures.get("last", {}).get(rate), figures.get("best", {}).get(rate),
                                                f"{self.paper_ref}, {name}" if figures else ""))
        return out


UPSTREAM_TABLES: dict[str, UpstreamTable] = {
    "table4": UpstreamTable(
        "table4", "Table 4: generality (Co-teaching, CDR, ELR+ with and without DMLP)",
        ("coteaching", "cdr", "elr_plus"), P.TABLE4_C10, "Table 4",
        "Paper: Table 4, CIFAR-10 (Co-teaching with its 9-layer CNN, CDR a ResNet-50, ELR+ two "
        "PreAct-ResNet-18s), DMLP on SimCLR ResNet-50 features."),
    "table1-dividemix": UpstreamTable(
        "table1-dividemix", "Table 1: DivideMix and DMLP-DivideMix",
        ("dividemix",), P.TABLE1_DIVIDEMIX_C10, "Table 1",
        "Paper: Table 1, CIFAR-10, DivideMix and DMLP-DivideMix rows (PreAct-ResNet-18), DMLP on SimCLR "
        "ResNet-50 features."),
}


def get_upstream_table(name: str) -> UpstreamTable:
    try:
        return UPSTREAM_TABLES[name]
    except KeyError:
        raise InputError(f"unknown upstream table {name!r} (known: {', '.join(UPSTREAM_TABLES)})") from None


@dataclass
class UpstreamInputs:
    """Where the runs read from: the folder of upstream clones, the CIFAR-10 folder (holding
    ``cifar-10-batches-py``, or it), and ``train()``, which returns the training features
    purified for the ``--dmlp`` cells and their clean labels, in CIFAR-10 order (called
    only when a cell needs them); ``features_name`` says in records what they are."""

    upstream_root: Path
    cifar_root: Path
    train: Callable[[], tuple[np.ndarray, np.ndarray]]
    features_name: str
    in_place: bool = False

    @classmethod
    def from_shared(cls, shared: Path, upstream_root: Path, cifar_root: Path, *, features: Path | None = None,
                    in_place: bool = False) -> "UpstreamInputs":
        """Features from ``features`` (an ``.npz`` with ``train``) or a folder of
        precomputed ones, and the clean labels stored beside them."""
        path = Path(features).expanduser() if features else Path(shared) / FEATURES
        labels = Path(shared) / TRAIN_LABELS

        def train() -> tuple[np.ndarray, np.ndarray]:
            for needed in (path, labels):
                if not needed.is_file():
                    raise MissingFileError(f"missing {needed} (the features to purify and their clean labels)")
            with np.load(path, allow_pickle=False) as z:
                feats = z["train"] if "train" in z.files else z[z.files[0]]
            return feats, np.load(labels, allow_pickle=False)

        return cls(Path(upstream_root).expanduser(), Path(cifar_root).expanduser(), train, str(path), in_place)

    @classmethod
    def from_plan(cls, plan: Any, upstream_root: Path, cifar_root: Path, *, in_place: bool = False
                  ) -> "UpstreamInputs":
        """The features of a :class:`~dmlp_plugin.reproduce.local_inputs.InputsPlan`
        (every row) and the CIFAR-10 training labels it carries."""
        def train() -> tuple[np.ndarray, np.ndarray]:
            inputs = plan.load()
            return inputs.train, inputs.clean

        return cls(Path(upstream_root).expanduser(), Path(cifar_root).expanduser(), train, plan.tag, in_place)


@dataclass
class UpstreamRun:
    table: UpstreamTable
    protocol: UpstreamProtocol
    records: list[dict[str, Any]]
    computed: int
    skipped: int
    seconds: float


# -- preparing clones, data and purified files -------------------------------------------------


def _recipe(method: str) -> Any:
    from ..plugins import get_adapter

    recipe = get_adapter(method).integration
    if recipe is None:
        raise UpstreamRunError(f"adapter {method!r} has no integration recipe")
    return recipe


def _integrate(method: str, clone: Path) -> None:
    """What ``dmlp integrate METHOD CLONE`` does, called as a function: the recipe of the
    adapter registered as ``method``, applied (idempotently) to ``clone``."""
    from dmlp_integrations import apply

    from .. import __version__

    try:
        apply.integrate(_recipe(method), clone, version=__version__)
    except DmlpError as exc:
        raise UpstreamRunError(f"dmlp integrate {method} {clone} failed: {exc}") from None


def _require_integrated(method: str, clone: Path, *, ours: bool) -> None:
    """Refuse, in one line, a clone whose marker does not say cleanly integrated (interrupted,
    edited since, for another method, or forged): upstream code is about to run in it.
    ``ours``: the copy under the work folder, which a rerun remakes once it is deleted."""
    from dmlp_integrations import apply

    try:
        apply.require_integrated(_recipe(method), clone)
    except DmlpError as exc:
        hint = f"; delete {clone} and rerun to copy and integrate it again" if ours else ""
        raise UpstreamRunError(f"{exc}{hint}") from None


def prepare_clone(method: str, inputs: UpstreamInputs, work: Path) -> Path:
    """An integrated clone of ``method`` with CIFAR-10 in its layout: a copy under ``work``
    (made once), or the user's clone itself with ``in_place``. A clone that already has a
    marker is used only if it is cleanly integrated."""
    from dmlp_integrations.apply import has_marker

    source = inputs.upstream_root / FOLDERS[method]
    if not source.is_dir():
        raise MissingFileError(f"no {DISPLAY[method]} clone at {source} (--upstream-root must hold "
                               f"{', '.join(FOLDERS.values())})")
    clone = source if inputs.in_place else work / FOLDERS[method]
    if has_marker(clone):
        _require_integrated(method, clone, ours=not inputs.in_place)
    elif inputs.in_place:
        _integrate(method, clone)
    else:
        if clone.exists():
            shutil.rmtree(clone)  # an interrupted copy
        partial = clone.with_name(clone.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial, symlinks=True)
        _integrate(method, partial)
        partial.rename(clone)
    _prepare_data(method, clone, inputs.cifar_root)
    return clone


def _prepare_data(method: str, clone: Path, cifar_root: Path) -> None:
    from ..data.layouts import write_cifar10_layout

    if method == "coteaching" and not (clone / "data" / "cifar-10-batches-py" / "test_batch").is_file():
        # The pickles as they are: hard links where the file system allows, else copies.
        from ..data.cifar import CIFAR10

        source = CIFAR10(cifar_root, "train").folder_path  # checks every batch
        dest = clone / "data" / "cifar-10-batches-py"
        dest.mkdir(parents=True, exist_ok=True)
        for src in sorted(source.iterdir()):
            if src.is_file():
                _link_or_copy(src, dest / src.name)
    elif method == "cdr" and not (clone / "data" / "cifar10" / "test_labels.npy").is_file():
        write_cifar10_layout(cifar_root, "cdr-npy", clone)
    elif method == "dividemix":
        (clone / "checkpoint").mkdir(exist_ok=True)  # it opens ./checkpoint/<name>_acc.txt


def _cifar_folder(root: Path) -> Path:
    return root if root.name == "cifar-10-batches-py" else root / "cifar-10-batches-py"


def _link_or_copy(src: Path, dest: Path) -> None:
    if dest.exists():
        return
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


class _Purified:
    """The purified file of each (rate, seed), made once and cached on disk."""

    def __init__(self, inputs: UpstreamInputs, protocol: UpstreamProtocol, folder: Path, device: str) -> None:
        self.inputs, self.protocol, self.folder, self.device = inputs, protocol, folder, device
        self._features: np.ndarray | None = None
        self._clean: np.ndarray | None = None
        self.summaries: dict[tuple[float, int], dict[str, Any]] = {}

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        if self._features is None:
            train, clean = self.inputs.train()
            if self.protocol.smoke:
                train = train[:, :128]
            self._features = np.ascontiguousarray(train, dtype=np.float32)
            self._clean = np.asarray(clean).astype(np.int64)
            if len(self._features) != len(self._clean):
                raise InputError(f"{self.inputs.features_name} has {len(self._features)} rows but "
                                 f"{len(self._clean)} clean labels")
        return self._features, self._clean

    def noisy(self, rate: float, seed: int) -> np.ndarray:
        _, clean = self._load()
        return noisy_labels(clean, "symmetric", rate, seed)

    def path(self, rate: float, seed: int) -> Path:
        tag = f"sym{round(100 * rate)}_s{seed}_{self.protocol.mode}{'_smoke' if self.protocol.smoke else ''}"
        return self.folder / f"purified_{tag}.npz"

    def get(self, rate: float, seed: int) -> tuple[Path, dict[str, Any]]:
        from ..purify import purify_dataset
        from ..result import PurifyResult

        path = self.path(rate, seed)
        features, clean = self._load()
        noisy = self.noisy(rate, seed)
        if path.is_file():
            result = PurifyResult.load(path)
            if not np.array_equal(result.given_labels, noisy):
                raise InputError(f"{path} was purified from other noisy labels; delete it to remake it")
        else:
            trusted = draw_trusted(len(clean), self.protocol.num_trusted, seed)
            result = purify_dataset(features, noisy, val_indices=trusted, val_labels=clean[trusted],
                                    num_classes=NUM_CLASSES, config=self.protocol.purify_config(), seed=seed,
                                    device=self.device, progress=False)
            self.folder.mkdir(parents=True, exist_ok=True)
            result.save(path)
        mask = np.ones(len(clean), bool)
        mask[result.trusted_indices] = False
        summary = {"path": str(path), "mode": self.protocol.mode, "features": self.inputs.features_name,
                   "num_trusted": int(len(result.trusted_indices)),
                   "given_label_accuracy": float((noisy[mask] == clean[mask]).mean()),
                   "label_accuracy": float((result.labels[mask] == clean[mask]).mean()),
                   "estimated_residual_noise": float(result.estimated_noise_rate())}
        return path, summary


def _dividemix_data(base: Path, cifar_root: Path, rate: float, seed: int, noisy: np.ndarray) -> Path:
    """DivideMix's --data_path for one seed: the flat pickles (hard links) and the noise file
    ``<r>_sym.json`` it reads, which is the file that was purified."""
    from ..data.layouts import write_cifar10_layout

    pickles = base / "pickles"
    if not (pickles / "test_batch").is_file():
        write_cifar10_layout(cifar_root, "pickles", pickles)
    folder = base / f"s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    for src in pickles.iterdir():
        _link_or_copy(src, folder / src.name)
    noise = folder / f"{rate:.1f}_sym.json"
    text = json.dumps([int(y) for y in noisy])
    if not noise.is_file() or noise.read_text() != text:
        from ..io import atomic_write

        with atomic_write(noise, "w") as fh:
            fh.write(text)
    return folder


# -- one run -----------------------------------------------------------------------------------


#: ``dmlp run``'s options, as :class:`UpstreamCommand` holds them: flag, and what sets it in
#: the launcher's environment (``dmlp_integrations.launch``).
_RUN_OPTIONS = {"skip_md5": ("--skip-md5", "ENV_SKIP_MD5"), "max_iters": ("--max-iters", "ENV_MAX_ITERS"),
                "max_eval_batches": ("--max-eval-batches", "ENV_MAX_EVAL_BATCHES"),
                "num_workers": ("--num-workers", "ENV_NUM_WORKERS")}


@dataclass
class UpstreamCommand:
    """One upstream training run: its script and arguments, the folder it runs in, and the
    ``dmlp run`` options it runs under (``skip_md5``, ``max_iters``, ``max_eval_batches``,
    ``num_workers``)."""

    method: str
    cwd: Path
    script: list[str]
    options: dict[str, Any]

    def dmlp_argv(self) -> list[str]:
        """The same run as a ``dmlp run`` command (after ``dmlp``), recorded with the cell so
        it can be rerun by hand."""
        flags: list[str] = []
        for key, (flag, _) in _RUN_OPTIONS.items():
            value = self.options.get(key)
            if value is True:
                flags.append(flag)
            elif value is not None and value is not False:
                flags += [flag, str(value)]
        return ["run", self.method, *flags, "--cwd", str(self.cwd), "--", "python", *self.script]

    def launch(self) -> tuple[list[str], dict[str, str]]:
        """``(argv, environment)`` of the process: the interpreter running the script
        through ``dmlp_integrations.launch``, set up as ``dmlp run`` sets it up."""
        from dmlp_integrations import launch

        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        for key, (_, name) in _RUN_OPTIONS.items():
            value = self.options.get(key)
            if value is not None and value is not False:
                env[getattr(launch, name)] = "1" if value is True else str(value)
        return [sys.executable, "-m", "dmlp_integrations.launch", *self.script], env


def build_command(cell: UpstreamCell, protocol: UpstreamProtocol, clone: Path, cell_dir: Path, *,
                  purified: Path | None, dividemix_data: Path | None = None,
                  cifar_root: Path | None = None) -> tuple[list[str], Path]:
    """``(dmlp run argv after "dmlp", working folder)`` for one cell."""
    command = upstream_command(cell, protocol, clone, cell_dir, purified=purified, dividemix_data=dividemix_data,
                               cifar_root=cifar_root)
    return command.dmlp_argv(), command.cwd


def upstream_command(cell: UpstreamCell, protocol: UpstreamProtocol, clone: Path, cell_dir: Path, *,
                     purified: Path | None, dividemix_data: Path | None = None,
                     cifar_root: Path | None = None) -> UpstreamCommand:
    """The :class:`UpstreamCommand` of one cell."""
    rate, method, seed = f"{cell.rate:g}", cell.method, cell.seed
    smoke, epochs = protocol.smoke, protocol.epochs
    # a smoke run: no worker processes, evaluation passes cut to one batch
    quick = {"max_eval_batches": 1, "num_workers": 0}
    if method in ("coteaching", "cdr"):
        cwd = clone
        script = ["main.py", "--dataset", "cifar10", "--noise_type", "symmetric", "--noise_rate", rate,
                  "--seed", str(_SEED_BASE[method] + seed),
                  "--result_dir", str(cell_dir / "results") + (os.sep if method == "coteaching" else "")]
        options: dict[str, Any] = {"skip_md5": method == "coteaching"}
        if smoke and method == "coteaching":  # one training step (its own cap: step 0, then break), then the evaluation
            script += ["--num_iter_per_epoch", "0"]
            options.update(max_iters=2, **quick)
        elif smoke:  # CDR evaluates before training: that evaluation and one training step
            options.update(max_iters=1, **quick)
        elif epochs is not None:
            options["max_iters"] = epochs * ITERS_PER_EPOCH[method]
    elif method == "dividemix":
        cwd, options = clone, {}
        if dividemix_data is None:
            raise InputError("DivideMix needs its data folder")
        script = ["Train_cifar.py", "--r", rate, "--noise_mode", "sym", "--data_path", str(dividemix_data)]
        if smoke:  # warm-up steps only: no epoch ends, so there is no test accuracy to parse
            script += ["--batch_size", "16"]
            options.update(max_iters=3, num_workers=0)
        elif epochs is not None:
            script += ["--num_epochs", str(epochs - 1)]  # it runs epochs 0..num_epochs
    elif method == "elr_plus":
        cwd = clone / "ELR_plus"
        script = _elr_plus_script(cwd, cell, protocol, cell_dir, cifar_root)
        options = {"skip_md5": True, **({"max_iters": 4, **quick} if smoke else {})}
    else:
        raise InputError(f"no upstream {method!r} (known: {', '.join(FOLDERS)})")
    if purified is not None:
        script += ["--dmlp", str(purified), "--dmlp-record", str(cell_dir / "dmlp-record.json")]
    return UpstreamCommand(method, cwd, script, options)


def _elr_plus_script(cwd: Path, cell: UpstreamCell, protocol: UpstreamProtocol, cell_dir: Path,
                     cifar_root: Path | None) -> list[str]:
    """ELR+ reads a JSON config: the cell's copy of the clone's, written to ``cell_dir``."""
    config = json.loads((cwd / "config_cifar10.json").read_text())
    if cifar_root is None:
        raise InputError("ELR+ needs the CIFAR-10 folder")
    config["data_loader"]["args"]["data_dir"] = str(_cifar_folder(Path(cifar_root)).parent)
    config["trainer"]["save_dir"] = str(cell_dir / "elr-out")
    config["seed"] = _SEED_BASE["elr_plus"] + cell.seed
    if protocol.epochs is not None:
        config["trainer"]["epochs"] = protocol.epochs
    if protocol.smoke:
        config["data_loader"]["args"].update(batch_size=16, batch_size2=16, num_workers=0, pin_memory=False)
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / "config.json").write_text(json.dumps(config, indent=2))
    return ["train.py", "-c", str(cell_dir / "config.json"), "--percent", f"{cell.rate:g}"]


def run_process(command: UpstreamCommand, log_path: Path, time_limit: float | None) -> tuple[int, bool, float]:
    """Run ``command`` with its output in ``log_path``; ``(exit status, stopped by the time
    limit, seconds)``. At the limit the whole process group is ended.

    The run is a process of its own, not a call: it is someone else's training script,
    which patches torch for the CPU, may call ``sys.exit`` or crash the interpreter, and must
    be stoppable at the time limit together with the workers it starts.
    """
    argv, env = command.launch()
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=command.cwd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=time_limit)
            stopped = False
        except subprocess.TimeoutExpired:
            stopped = True
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            rc = proc.returncode if proc.returncode is not None else -9
    return rc, stopped, time.perf_counter() - start


def _record_summary(path: Path) -> dict[str, Any] | None:
    """The run's ``dmlp-record.json`` without the per-sample lists (kept in the file itself)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "samples"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    out = strip(record)
    out["path"] = str(path)
    return out


def run_upstream_cell(cell: UpstreamCell, protocol: UpstreamProtocol, clone: Path, cell_dir: Path, *,
                      purified: tuple[Path, dict[str, Any]] | None, dividemix_data: Path | None = None,
                      cifar_root: Path | None = None, code: dict[str, str] | None = None) -> dict[str, Any]:
    """Train one cell and return its record (``docs/reproduce.md`` lists the fields).

    Raises
    ------
    UpstreamRunError
        When the run exits with an error (not stopped by the time limit), or a ``--dmlp``
        run leaves no ``dmlp-record.json``.
    """
    if cell_dir.exists():
        shutil.rmtree(cell_dir)  # an earlier, unfinished attempt
    cell_dir.mkdir(parents=True)
    command = upstream_command(cell, protocol, clone, cell_dir, purified=purified[0] if purified else None,
                               dividemix_data=dividemix_data, cifar_root=cifar_root)
    log_path = cell_dir / "log.txt"
    started = time.perf_counter()
    rc, stopped, seconds = run_process(command, log_path, protocol.time_limit)
    text = log_path.read_text(errors="replace")
    if rc != 0 and not stopped:
        tail = [line for line in text.splitlines() if line.strip()][-1:] or ["(no output)"]
        raise UpstreamRunError(f"{cell.series} at {cell.panel} exited with status {rc}: {tail[0][:300]} "
                               f"(log: {log_path})")
    parsed = parse_log(cell.method, text)
    notes = []
    if not parsed.evaluations:
        notes.append("the run printed no test accuracy"
                     + (" (a smoke run stops before its first evaluation)" if protocol.smoke else ""))
    record_summary = None
    if cell.dmlp:
        record_summary = _record_summary(cell_dir / "dmlp-record.json")
        if record_summary is None:
            raise UpstreamRunError(f"{cell.series} at {cell.panel} ran with --dmlp but left no readable "
                                   f"{cell_dir / 'dmlp-record.json'} (log: {log_path})")
    metrics: dict[str, Any] = {"test_accuracy": parsed.last, "best_test_accuracy": parsed.best,
                               "trained_epochs": parsed.trained_epochs, "evaluations": len(parsed.evaluations)}
    if cell.method == "cdr":
        results = sorted((cell_dir / "results").rglob("*.txt"))
        selected = parse_cdr_results(results[0]) if results else None
        metrics["selected_test_accuracy"] = selected["selected"] if selected else None
    if cell.method == "coteaching" and parsed.evaluations:
        metrics.update({f"test_accuracy_{k}": v for k, v in parsed.evaluations[-1].extra.items()})
    return {
        **record_header(cell, protocol),
        "method": "dmlp" if cell.dmlp else "upstream",
        "upstream": cell.method,
        "settings": cell.settings(protocol),
        "seed": cell.seed,
        "code": code or {},
        "command": ["dmlp", *command.dmlp_argv()],
        "cwd": str(command.cwd),
        "returncode": rc,
        "stopped": "time-limit" if stopped else ("max-iters" if "(--max-iters)" in text else None),
        "metrics": metrics,
        "evaluations": parsed.to_dict()["evaluations"],
        "purified": purified[1] if purified else None,
        "dmlp_record": record_summary,
        "log": str(log_path),
        "warnings": notes,
        "paper": ({"value": cell.paper, "best": cell.paper_best, "ref": cell.paper_ref + ", Last"}
                  if cell.paper is not None else None),
        "run_s": seconds,
        "total_s": time.perf_counter() - started,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def run_upstream_table(name: str, store: ResultStore, inputs: UpstreamInputs | Callable[[], UpstreamInputs], *,
                       protocol: UpstreamProtocol | None = None, seeds: Sequence[int] = (0,),
                       methods: Sequence[str] | None = None, rates: Sequence[float] | None = None,
                       cells: str | None = None, force: bool = False, jobs: int = 1, device: str = "cpu",
                       log: Callable[[str], None] | None = None) -> UpstreamRun:
    """Run every cell of upstream table ``name`` that the store does not hold yet.

    ``methods``/``rates`` restrict the table; ``cells`` is a glob on the cell key (e.g.
    ``coteaching_sym80_*``); ``jobs`` runs that many cells at once (after the clones, data
    and purified files are prepared, one by one); ``device`` is where purification runs
    (the upstreams use CUDA when they see it). ``inputs`` may be a callable, called only if
    some cell must run.
    """
    from .runner import code_version

    table = get_upstream_table(name)
    protocol = protocol or UpstreamProtocol()
    if methods is not None:
        unknown = [m for m in methods if m not in table.methods]
        if unknown:
            raise InputError(f"{name} has no method {', '.join(unknown)} (it has {', '.join(table.methods)})")
    all_cells = [c for c in table.cells(list(seeds), methods=methods, rates=rates)
                 if cells is None or fnmatch.fnmatch(c.key, cells)]
    if not all_cells:
        raise InputError(f"no cell of {name} matches the methods, rates and --cells given")
    start = time.perf_counter()
    positions, found = store.pending(table.name, [cell.cell_id(protocol) for cell in all_cells], force=force)
    todo = [all_cells[k] for k in positions]
    if todo:
        inp = inputs() if callable(inputs) else inputs
        work = store.root / "upstream"
        folder = store.root / table.name
        purifier = _Purified(inp, protocol, folder / "inputs", device)
        clones = {m: prepare_clone(m, inp, work) for m in dict.fromkeys(c.method for c in todo)}
        code = code_version()
        jobs_ = []
        for cell in todo:
            purified = purifier.get(cell.rate, cell.seed) if cell.dmlp else None
            dm_data = (_dividemix_data(work / "dividemix-data", inp.cifar_root, cell.rate, cell.seed,
                                       purifier.noisy(cell.rate, cell.seed)) if cell.method == "dividemix" else None)
            jobs_.append((cell, purified, dm_data))
        lock = threading.Lock()

        def one(job):
            cell, purified, dm_data = job
            record = run_upstream_cell(cell, protocol, clones[cell.method], folder / "runs" / cell.cell_id(protocol),
                                       purified=purified, dividemix_data=dm_data, cifar_root=inp.cifar_root,
                                       code=code)
            with lock:
                store.save(record)
                found[record["cell_id"]] = record
                if log is not None:
                    m = record["metrics"]
                    acc = m["test_accuracy"]
                    log(f"{table.name} {cell.panel:<8} {cell.series:<18} seed {cell.seed}: test "
                        + (f"{acc:6.2f}" if acc is not None else "  —   ")
                        + f" after {m['trained_epochs']} epoch(s)  ({record['run_s']:.0f} s)")
            return record

        if jobs <= 1:
            for job in jobs_:
                one(job)
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for future in [pool.submit(one, job) for job in jobs_]:
                    future.result()
    records = [found[c.cell_id(protocol)] for c in all_cells]
    return UpstreamRun(table, protocol, records, len(todo), len(all_cells) - len(todo), time.perf_counter() - start)


# -- rendering ---------------------------------------------------------------------------------

UPSTREAM_HEAD = ["setting", "method", "test (last)", "best", "epochs", "purified labels", "paper last", "paper best",
                 "--dmlp injected"]


def upstream_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """``(head, body)``: one row per (setting, method), seeds averaged. Accuracies in %."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["panel"], record["series"]), []).append(record)
    body = []
    for (panel, series), group in groups.items():
        first = group[0]
        paper = first.get("paper") or {}
        injected = "—"
        if first.get("method") == "dmlp":
            parts = [sorted({i.get("part", "?") for i in (r.get("dmlp_record") or {}).get("injections", [])})
                     for r in group]
            injected = ", ".join(parts[0]) if all(parts) else "no"
        purified = [(r.get("purified") or {}).get("label_accuracy") for r in group]
        epochs = {r["metrics"].get("trained_epochs") for r in group}
        body.append([panel, series + (f" ({len(group)} seeds)" if len(group) > 1 else ""),
                     mean_std([r["metrics"].get("test_accuracy") for r in group], scale=1.0),
                     mean_std([r["metrics"].get("best_test_accuracy") for r in group], scale=1.0),
                     "/".join(str(e) if e is not None else "—" for e in sorted(epochs, key=lambda e: (e is None, e))),
                     mean_std(purified),
                     f"{paper['value']:.1f}" if paper.get("value") is not None else "—",
                     f"{paper['best']:.1f}" if paper.get("best") is not None else "—",
                     injected])
    return list(UPSTREAM_HEAD), body
