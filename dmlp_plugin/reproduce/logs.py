"""Reading an upstream LNL run's test accuracy from what it prints (``dmlp reproduce table4``).

One parser per integrated upstream, written against the exact format strings of the
commits the integrations support (see ``docs/integrations.md``):

``coteaching`` (``main.py``)
    ``Epoch [%d/%d] Test Accuracy on the %s test images: Model1 %.4f %% Model2 %.4f %% ...``,
    once before training (random weights) and after every epoch. The cell's accuracy is
    the mean of the two networks (both are kept).
``cdr`` (``main.py``)
    ``Epoch [%d/%d] Test Accuracy on the %s test data: Model1 %.4f %%``, once before
    training and after every epoch. CDR's own final figure (the test accuracy at the epoch
    of best validation accuracy) is never printed; :func:`parse_cdr_results` reads it from
    the ``epoch train_acc1 val_acc1 test_acc1`` rows of its results file.
``dividemix`` (``Train_cifar.py``)
    ``| Test Epoch #%d\\t Accuracy: %.2f%%`` after every epoch (the two networks' ensemble).
``elr_plus`` (``base/base_trainer.py``, through ``logging``)
    ``    epoch          : %d`` then, among the epoch's log lines, ``    test_my_metric : %f``
    (a fraction; stored as %).

Every parser returns the evaluations in order, each with the number of training epochs
before it, so a shortened or smoke run says which epoch its number comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError

__all__ = ["Evaluation", "LogResult", "parse_log", "parse_cdr_results", "PARSERS"]

_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"


@dataclass(frozen=True)
class Evaluation:
    """One test evaluation: training epochs completed before it, accuracy in %, and extras
    (per-network accuracies)."""

    trained_epochs: int
    accuracy: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class LogResult:
    """The evaluations found in a log, in order."""

    method: str
    evaluations: list[Evaluation]

    @property
    def last(self) -> float | None:
        """The final evaluation's accuracy (the paper's "Last"), ``None`` if there is none."""
        return self.evaluations[-1].accuracy if self.evaluations else None

    @property
    def best(self) -> float | None:
        """The best accuracy over the evaluations after training started (the paper's
        "Best"); the evaluation of random weights does not count unless it is the only one."""
        trained = [e.accuracy for e in self.evaluations if e.trained_epochs > 0] or \
            [e.accuracy for e in self.evaluations]
        return max(trained) if trained else None

    @property
    def trained_epochs(self) -> int | None:
        return self.evaluations[-1].trained_epochs if self.evaluations else None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "last": self.last, "best": self.best, "trained_epochs": self.trained_epochs,
                "evaluations": [{"trained_epochs": e.trained_epochs, "accuracy": e.accuracy, **e.extra}
                                for e in self.evaluations]}


_COTEACHING = re.compile(r"Epoch \[(\d+)/(\d+)\] Test Accuracy on the (\d+) test images: Model1 " + _NUM
                         + r" % Model2 " + _NUM + r" %")
_CDR = re.compile(r"Epoch \[(\d+)/(\d+)\] Test Accuracy on the (\d+) test data: Model1 " + _NUM + r" %")
_DIVIDEMIX = re.compile(r"\| Test Epoch #(\d+)\s+Accuracy: " + _NUM + r"%")
_ELR_EPOCH = re.compile(r"^\s*epoch\s*: (\d+)\s*$")
_ELR_TEST = re.compile(r"^\s*test_my_metric\s*: " + _NUM + r"\s*$")


def _coteaching(text: str) -> list[Evaluation]:
    # The first line is the evaluation of random weights ("Epoch [1/200]", printed as epoch+1
    # with epoch 0); the k-th after it follows k training epochs (also printed as k+1).
    out = []
    for k, m in enumerate(_COTEACHING.finditer(text)):
        a1, a2 = float(m.group(4)), float(m.group(5))
        out.append(Evaluation(k, (a1 + a2) / 2, {"model1": a1, "model2": a2}))
    return out


def _cdr(text: str) -> list[Evaluation]:
    # As Co-teaching: one evaluation before training, then one per epoch; both the first
    # and the second print "Epoch [1/...]", so the order, not the number, gives the epoch.
    return [Evaluation(k, float(m.group(4))) for k, m in enumerate(_CDR.finditer(text))]


def _dividemix(text: str) -> list[Evaluation]:
    return [Evaluation(int(m.group(1)) + 1, float(m.group(2))) for m in _DIVIDEMIX.finditer(text)]


def _elr_plus(text: str) -> list[Evaluation]:
    out, epoch = [], None
    for line in text.splitlines():
        m = _ELR_EPOCH.match(line)
        if m:
            epoch = int(m.group(1))
            continue
        m = _ELR_TEST.match(line)
        if m and epoch is not None:
            out.append(Evaluation(epoch, 100.0 * float(m.group(1))))
            epoch = None
    return out


PARSERS: dict[str, Callable[[str], list[Evaluation]]] = {
    "coteaching": _coteaching, "cdr": _cdr, "dividemix": _dividemix, "elr_plus": _elr_plus}


def parse_log(method: str, text: str) -> LogResult:
    """The test evaluations ``method``'s script printed in ``text`` (stdout and stderr).

    Raises
    ------
    InputError
        For a method without a parser.
    """
    try:
        parser = PARSERS[method]
    except KeyError:
        raise InputError(f"no log parser for {method!r} (known: {', '.join(PARSERS)})") from None
    return LogResult(method, parser(text))


def parse_cdr_results(path: str | Path) -> dict[str, float] | None:
    """CDR's results file (``epoch train_acc1 val_acc1 test_acc1`` rows, the first for the
    random weights): ``{"selected": test accuracy at the best validation accuracy over the
    training epochs (CDR's reported figure), "best_val": that validation accuracy}``, or
    ``None`` when the file is missing or holds no trained epoch."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    rows = []
    for line in lines:
        parts = line.split()
        if len(parts) != 4 or parts[0] == "epoch":
            continue
        try:
            rows.append(tuple(float(p) for p in parts))
        except ValueError:
            continue
    trained = rows[1:]  # the first row is the evaluation before training
    if not trained:
        return None
    best = max(range(len(trained)), key=lambda i: trained[i][2])  # first best, as np.argmax
    return {"selected": trained[best][3], "best_val": trained[best][2]}
