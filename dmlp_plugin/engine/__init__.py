"""The purifier engine: pure torch, no plugin layer. Two pipelines (``docs/engine.md`` maps them):

- :mod:`.paper_loop`: the paper's loop, IPC (:mod:`.ipc`, :mod:`.label_update`) and the
  linear head (:mod:`.eac`) mixing every ``T`` epochs;
- :mod:`.pipeline`: the default, candidates (:mod:`.rounds`, :mod:`.candidates`) →
  calibrate through ``T`` (:mod:`.calibrate`, :mod:`.posterior`) → select.

:func:`run` takes either config and runs its pipeline on a :class:`.problem.Problem`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import AnyConfig, PaperConfig
from .output import CandidateRecord, EngineOutput
from .paper_loop import run_paper
from .pipeline import run_default
from .problem import Problem
from .subnormals import flushing_subnormals

__all__ = ["run", "Problem", "EngineOutput", "CandidateRecord"]


def run(problem: Problem, config: AnyConfig, generator: torch.Generator, **callbacks: Any) -> EngineOutput:
    """Run ``config``'s pipeline. ``callbacks``: :func:`.paper_loop.run_paper`'s
    (``on_epoch``, ``spill_dir``) or :func:`.pipeline.run_default`'s (``on_round``,
    ``on_progress``).

    On CPU, subnormal floats are flushed to zero while it runs: softmax probabilities of
    confident rows underflow into that range, and arithmetic on them is an order of
    magnitude slower (it made the candidate fits 3× slower on CIFAR-10). Values below
    1e-38 change no label.
    """
    with flushing_subnormals(problem.device):
        if isinstance(config, PaperConfig):
            return run_paper(problem, config, generator, **callbacks)
        return run_default(problem, config, generator, **callbacks)
