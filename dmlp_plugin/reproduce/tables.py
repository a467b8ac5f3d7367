"""The tables ``dmlp reproduce`` can run: their cells, settings and paper figures.

A table is a list of :class:`CellSpec`, one per (setting, seed). A cell is one
purification (or none, for the classifier baseline) followed by measurements; its
settings, together with the :class:`Protocol` (how big, how long), determine its id in
the results store.

Tables (CIFAR-10, the shared k-means features, symmetric noise in the DivideMix convention):

- ``table1``: the "Classifier" and "DMLP-Naive" rows of the paper's Table 1, linear
  version: a linear classifier trained on the noisy labels against one trained on DMLP's
  purified labels (default and paper mode), scored on the test set.
- ``table5``: the ablation of the paper's Table 5: IPC only, EAC only, both, in paper mode
  (:meth:`PurifyConfig.paper`) and in the default (:class:`PurifyConfig`).
- ``table7``: the size of the trusted set (the paper's Table 7 varies Clothing1M's clean
  set; here CIFAR-10's, 100 to 5,000 samples).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import PaperConfig, PurifyConfig
from ..errors import InputError
from . import paper as P
from .cifar_inputs import with_epochs
from .store import make_cell_id

__all__ = ["Protocol", "FULL", "SMOKE", "CellSpec", "TableSpec", "TABLES", "get_table", "RATES"]

RATES = (0.2, 0.5, 0.8, 0.9)


@dataclass(frozen=True)
class Protocol:
    """How big and how long every cell of a run is.

    ``train_rows``/``test_rows``: a random subset of the training/test set (``None``: all);
    ``feature_dims``: keep the first this many feature dimensions (the shared features are
    PCA components, largest variance first; ``None``: all 512);
    ``epochs``: purification epochs (``None``: the config's own, 100), with the EAC period
    scaled alike; ``mlp_epochs``, ``mlp_repeats``: the network candidate's epochs and
    deals (``None``: the config's own); ``probe_iters``: L-BFGS iterations of the linear
    classifier; ``trusted_scale``, ``trusted_power``: a nominal trusted-set size ``n`` becomes
    ``scale · n^power`` rows, never fewer than ``min_trusted`` (a smoke run's subset is
    smaller, so its trusted sets are too: ``5·√n`` keeps 100 to 5,000 distinct, 50 to 354,
    where a plain scale would squash the small ones onto the floor).
    """

    smoke: bool = False
    train_rows: int | None = None
    test_rows: int | None = None
    feature_dims: int | None = None
    epochs: int | None = None
    mlp_epochs: int | None = None
    mlp_repeats: int | None = None
    probe_iters: int = 100
    trusted_scale: float = 1.0
    trusted_power: float = 1.0
    min_trusted: int = 50
    features: str = "cifar10_kmeans_pca512"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def adapt(self, config: PurifyConfig) -> PurifyConfig:
        """``config`` as this protocol runs it: shortened to ``epochs``, and on a subset the
        linear head takes as many steps per epoch as cover the rows once (the official 98
        steps of 500 rows cover 49,000), so a smoke run does not spend its time there; nor
        in the network candidate, whose epochs do not shorten with the purification's."""
        config = with_epochs(config, self.epochs)
        network = isinstance(config, PurifyConfig) and config.mlp_candidate
        if self.mlp_epochs is not None and network:
            config = config.replace(mlp_epochs=self.mlp_epochs)
        if self.mlp_repeats is not None and network:
            config = config.replace(mlp_repeats=self.mlp_repeats)
        if self.train_rows is not None and isinstance(config, PaperConfig) and config.eac:
            steps = max(1, math.ceil(self.train_rows / config.eac_batch_size))
            if steps < config.eac_steps:
                config = config.replace(eac_steps=steps)
        return config

    def trusted(self, nominal: int) -> int:
        """The trusted rows actually drawn for a nominal size."""
        if self.trusted_scale == 1.0 and self.trusted_power == 1.0:
            return nominal
        return max(self.min_trusted, round(self.trusted_scale * nominal ** self.trusted_power))


#: The real tables: all 50,000 training and 10,000 test rows, 100 epochs.
FULL = Protocol()
#: A smoke run: 3,000 training rows (trusted sets shrunk to 5·√n: 1,000 becomes 158),
#: 1,000 test rows, the first 128 feature dimensions, 4 epochs (2 for the network
#: candidate, dealt once), 10 probe iterations; a table takes seconds on two cores.
SMOKE = Protocol(smoke=True, train_rows=3000, test_rows=1000, feature_dims=128, epochs=4, mlp_epochs=2, mlp_repeats=1,
                 probe_iters=10, trusted_scale=5.0, trusted_power=0.5)


@dataclass(frozen=True)
class CellSpec:
    """One cell: a setting and a seed.

    ``panel`` and ``series`` place it in plots and tables (a noise setting, and what
    varies within it); ``method`` is ``"classifier"`` (the given labels, no purification)
    or ``"dmlp"``; ``paper``/``paper_ref`` the paper's figure to print beside it, if any.
    """

    table: str
    key: str
    panel: str
    series: str
    method: str
    config: PurifyConfig | None
    rate: float
    num_trusted: int  # nominal (the full protocol's) size
    seed: int
    noise: str = "symmetric"
    paper: float | None = None
    paper_ref: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self, protocol: Protocol) -> dict[str, Any]:
        """Everything that determines this cell's result (hashed into its id)."""
        return {"table": self.table, "method": self.method,
                "config": self.config.to_dict() if self.config is not None else None,
                "noise": self.noise, "rate": self.rate, "num_trusted": protocol.trusted(self.num_trusted),
                "nominal_trusted": self.num_trusted, "seed": self.seed, "protocol": protocol.to_dict(), **self.extra}

    def cell_id(self, protocol: Protocol) -> str:
        key = f"{self.key}_s{self.seed}"
        return make_cell_id(("smoke_" if protocol.smoke else "") + key, self.settings(protocol))


@dataclass(frozen=True)
class TableSpec:
    """A reproducible table: its cells, and what it measures, for reports."""

    name: str
    title: str
    measures: str
    paper_caption: str
    build: Callable[[int], list[CellSpec]]
    #: Whether a cell (by its settings, :meth:`CellSpec.settings`) is one whose confusion
    #: matrix a report shows: our default, normally.
    headline: Callable[[dict[str, Any]], bool]
    #: Whether every row names the features it ran on (Table 8's sources); otherwise the
    #: rows are on the run's k-means features, and reports say so.
    rows_name_features: bool = False

    def cells(self, seeds: tuple[int, ...] | list[int] = (0,)) -> list[CellSpec]:
        """The cells for ``seeds``, in table order (settings first, then seed)."""
        per_seed = [self.build(seed) for seed in seeds]
        return [cell for cells in zip(*per_seed) for cell in cells]


def _sym(rate: float) -> str:
    return f"sym {rate:.0%}"


def _key_rate(rate: float) -> str:
    return f"sym{round(100 * rate)}"


MODES: dict[str, Callable[..., PurifyConfig]] = {"paper": PurifyConfig.paper, "default": PurifyConfig}


def _table1(seed: int) -> list[CellSpec]:
    cells = []
    for rate in RATES:
        cells.append(CellSpec("table1", f"{_key_rate(rate)}_classifier", _sym(rate), "Classifier (given labels)",
                              "classifier", None, rate, P.PAPER_TRUSTED_CIFAR, seed,
                              paper=P.TABLE1_C10["Cross-Entropy"]["last"][rate],
                              paper_ref="Table 1, Cross-Entropy, Last", extra={"mode": None}))
        for mode in ("default", "paper"):
            cells.append(CellSpec("table1", f"{_key_rate(rate)}_dmlp-{mode}", _sym(rate),
                                  f"DMLP-Naive ({mode})" if mode == "default" else "DMLP-Naive (paper mode)",
                                  "dmlp", MODES[mode](), rate, P.PAPER_TRUSTED_CIFAR, seed,
                                  paper=P.TABLE1_C10["DMLP-Naive"]["last"][rate],
                                  paper_ref="Table 1, DMLP-Naive, Last", extra={"mode": mode}))
    return cells


# (ipc, eac) of each ablation variant, in the paper's row order.
VARIANTS = {"ipc": (True, False), "eac": (False, True), "ipc-eac": (True, True)}
_VARIANT_NAMES = {"ipc": "IPC only", "eac": "EAC only", "ipc-eac": "IPC+EAC"}


def _table5(seed: int) -> list[CellSpec]:
    cells = []
    for rate in RATES:
        for mode in ("paper",):  # the default pipeline has no IPC to ablate
            for variant, (ipc, eac) in VARIANTS.items():
                cells.append(CellSpec("table5", f"{_key_rate(rate)}_{mode}_{variant}", _sym(rate),
                                      f"{mode}: {_VARIANT_NAMES[variant]}", "dmlp",
                                      MODES[mode](ipc=ipc, eac=eac), rate, P.PAPER_TRUSTED_CIFAR, seed,
                                      paper=P.TABLE5_C10[(ipc, eac)]["last"][rate],
                                      paper_ref=f"Table 5, {_VARIANT_NAMES[variant]}, Last",
                                      extra={"mode": mode, "ipc": ipc, "eac": eac}))
    return cells


TRUSTED_SIZES = (100, 250, 500, 1000, 2000, 5000)
TABLE7_RATES = (0.5, 0.8)


def _table7(seed: int) -> list[CellSpec]:
    cells = []
    for mode in ("default", "paper"):
        for rate in TABLE7_RATES:
            for size in TRUSTED_SIZES:
                fraction = size / P.PAPER_TRUSTED_CIFAR
                figure = P.TABLE7_CLOTHING1M.get(fraction)
                cells.append(CellSpec("table7", f"{_key_rate(rate)}_{mode}_t{size}", f"{mode}, {_sym(rate)}",
                                      f"{size} trusted", "dmlp", MODES[mode](), rate, size, seed,
                                      paper=figure,
                                      paper_ref=f"Table 7 (Clothing1M), {fraction:.0%} of its clean set"
                                      if figure is not None else "",
                                      extra={"mode": mode}))
    return cells


TABLES: dict[str, TableSpec] = {
    "table1": TableSpec(
        "table1", "Table 1 (linear): classifier on noisy labels vs on DMLP's purified labels",
        "Test accuracy of a linear classifier (L-BFGS softmax regression) trained on the given noisy labels "
        "(the trusted rows with their clean labels) against one trained on DMLP's purified labels, "
        "default and paper mode.",
        "Paper: Table 1, CIFAR-10, \"Cross-Entropy\" and \"DMLP-Naive\" rows (Last epoch): a ResNet "
        "trained with cross-entropy on SimCLR ResNet-50 features' noisy or purified labels.",
        _table1, lambda s: s["method"] == "dmlp" and s.get("mode") == "default"),
    "table5": TableSpec(
        "table5", "Table 5: ablation of IPC and EAC",
        "Purified-label accuracy (on the non-trusted rows) and linear test accuracy with IPC only, EAC only "
        "and both, in paper mode (`PurifyConfig.paper(ipc=..., eac=...)`). The default pipeline has no IPC: "
        "its least-squares rounds are EAC with a closed-form head (docs/engine.md).",
        "Paper: Table 5, CIFAR-10 columns (Last epoch): DMLP-Naive test accuracy.",
        _table5, lambda s: s.get("mode") == "paper" and bool(s.get("ipc")) and bool(s.get("eac"))),
    "table7": TableSpec(
        "table7", "Table 7 (CIFAR-10): size of the trusted set",
        "Purified-label accuracy and linear test accuracy with 100 to 5,000 trusted samples, at symmetric "
        "50% and 80% noise, default and paper mode. For one seed the trusted sets are nested.",
        "Paper: Table 7 is on Clothing1M (top-1 by the fraction of its official clean set); it is shown "
        "where the CIFAR size is the same fraction of the paper's 1,000-sample CIFAR trusted set "
        "(100 = 10%, 500 = 50%, 1000 = 100%), for the trend only.",
        _table7, lambda s: s.get("mode") == "default" and s.get("nominal_trusted") == P.PAPER_TRUSTED_CIFAR),
}


def get_table(name: str) -> TableSpec:
    """The table called ``name``; :class:`InputError` naming the known ones otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        close = difflib.get_close_matches(name, TABLES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown table {name!r} (known: {', '.join(TABLES)}){hint}") from None
