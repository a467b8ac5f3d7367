"""What both pipelines return: :class:`EngineOutput`, with one :class:`CandidateRecord` per
candidate the default pipeline scored."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["EngineOutput", "CandidateRecord", "to_simplex"]


@dataclass
class CandidateRecord:
    """One candidate of the default pipeline, as the selection saw it."""

    name: str
    family: str  # "least-squares rounds", "logistic candidate" or "network candidate"
    trusted_nll: float  # cross-fitted log-loss on the trusted rows: what selects
    label_accuracy: float | None = None  # of its argmax on the training rows, when clean labels were given
    changed: float | None = None  # fraction of training rows whose argmax differs from the given label
    selected: bool = False
    seconds: float | None = None  # fitting time of its whole family

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def to_history(self) -> dict[str, float]:
        """A least-squares round's entry in the history."""
        out = {"trusted_nll": self.trusted_nll, "changed": self.changed}
        if self.label_accuracy is not None:
            out["label_accuracy"] = self.label_accuracy
        return out


@dataclass
class EngineOutput:
    """The purified label distributions and a record of how they were made.

    ``history``: paper mode, one record per epoch (:data:`.paper_loop.METRICS`); the default
    pipeline, one per least-squares round. ``timings``: seconds per stage. ``candidates``:
    every candidate scored, in the order they were fitted (default pipeline only).
    """

    soft_labels: torch.Tensor  # (N, C) rows on the simplex
    history: list[dict[str, float]]
    timings: dict[str, float]
    transition: torch.Tensor | None = None
    candidates: list[CandidateRecord] = field(default_factory=list)
    #: The fitted transition weight ``b`` of the selected candidate's posterior (mean over views).
    transition_weight: float | None = None

    @property
    def selected(self) -> str | None:
        """The candidate the labels come from: ``"round k"``, ``"logistic (weight decay w)"``,
        ``"mlp"`` or ``"mlp + logistic"``; None in paper mode."""
        return next((c.name for c in self.candidates if c.selected), None)

    @property
    def candidate_nll(self) -> dict[str, float] | None:
        return {c.name: c.trusted_nll for c in self.candidates} or None


def to_simplex(soft: torch.Tensor) -> torch.Tensor:
    """Rows onto the simplex for output: clip negatives, renormalise (uniform if all zero)."""
    soft = soft.clamp_min(0)
    total = soft.sum(1, keepdim=True)
    uniform = torch.full_like(soft, 1.0 / soft.shape[1])
    return torch.where(total > 1e-12, soft / total.clamp_min(1e-12), uniform)
