"""The default pipeline (``PurifyConfig``): candidates → calibrate through ``T`` → select.

1. **Candidates**, family by family: the least-squares rounds (``engine/rounds.py``), the
   logistic path and the network (``engine/candidates.py``).
2. **Calibrate**: each candidate's held-out scores become a posterior through the noise
   transition, by the one calibrator (``engine/calibrate.py``).
3. **Select**: the candidate with the lowest cross-fitted trusted log-loss gives the labels;
   every candidate's score (and, with clean labels, its label accuracy) is recorded.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable

import torch

from ..config import PurifyConfig
from .calibrate import Calibrated, Calibrator
from .candidates import GivenLabels, LogisticPath, Network, network_fits
from .ls_head import trusted_folds
from .output import CandidateRecord, EngineOutput, to_simplex
from .problem import Problem, clock
from .rounds import LeastSquaresRounds

__all__ = ["run_default"]

#: ``on_progress(stage, done, total)``: a family's candidates done so far, of its total.
Progress = Callable[[str, int, int], None]


def run_default(problem: Problem, config: PurifyConfig, generator: torch.Generator, *,
                on_round: Callable[[int, dict[str, float]], None] | None = None,
                on_progress: Progress | None = None) -> EngineOutput:
    """Run the default pipeline on a prepared :class:`~.problem.Problem`.

    ``on_round(k, record)`` after each least-squares round (1-based ``k``, the record that
    lands in the history); ``on_progress`` as each candidate is done.
    """
    p = problem
    folds = trusted_folds(len(p.val_labels), config.trusted_folds, generator, p.device)
    calibrator = Calibrator(p, config, folds)
    selection = _Selection(p)
    families = [LeastSquaresRounds(config, folds)]
    if config.given_candidate:
        families.append(GivenLabels())
    if config.logistic_candidate:
        families.append(LogisticPath(config, folds))
    if config.mlp_candidate:
        if network_fits(p, config):
            families.append(Network(config, generator, selection.best_logistic))
        else:
            warnings.warn("the network candidate was left out: it needs the features held whole in one process "
                          "(not read in chunks under max_memory, nor split under torchrun) and two rows per fold",
                          RuntimeWarning, stacklevel=3)
    timings, history = {}, []
    for family in families:
        start, total = clock(p.device), family.count(p)
        for done, candidate in enumerate(family.fit(p, calibrator), 1):
            record = selection.add(candidate, family.family)
            if isinstance(family, LeastSquaresRounds):
                history.append({"round": done, **record.to_history()})
                if on_round is not None:
                    on_round(done, history[-1])
            if on_progress is not None:
                on_progress(family.family, done, total)
        timings[family.family] = clock(p.device) - start
        selection.charge(family.family, timings[family.family])
    soft = to_simplex(selection.best.posterior)
    weight = selection.best.transition_weight
    return EngineOutput(soft_labels=soft, history=history, timings=timings, transition=calibrator.transition,
                        candidates=selection.records,
                        transition_weight=None if weight is None else float(weight))


class _Selection:
    """Every candidate's record, and the best so far (the first of the lowest log-loss)."""

    def __init__(self, problem: Problem) -> None:
        self.p = problem
        self.records: list[CandidateRecord] = []
        self.best: Calibrated | None = None
        self.logistic: list[Calibrated] = []

    def add(self, candidate: Calibrated, family: str) -> CandidateRecord:
        labels = candidate.posterior.argmax(1)
        record = CandidateRecord(candidate.name, family, float(candidate.nll),
                         changed=float((labels != self.p.given).float().mean()),
                         label_accuracy=None if self.p.clean is None else float((labels == self.p.clean).float().mean()))
        if self.best is None or candidate.nll < self.best.nll:
            self.best = candidate
            for other in self.records:
                other.selected = False
            record.selected = True
        if family == LogisticPath.family:
            self.logistic.append(candidate)
        self.records.append(record)
        return record

    def best_logistic(self) -> Calibrated | None:
        return min(self.logistic, key=lambda c: float(c.nll)) if self.logistic else None

    def charge(self, family: str, seconds: float) -> None:
        for record in self.records:
            if record.family == family:
                record.seconds = seconds
