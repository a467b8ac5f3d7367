"""The inputs of both pipelines, prepared once: :class:`Problem`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .posterior import counted_transition
from .rows import FeatureRows

__all__ = ["Problem", "clock"]


@dataclass
class Problem:
    """Training rows with their given labels, and the trusted rows with their clean ones.

    ``views``: per feature view, ``(training features, trusted features)``; training
    features are one tensor, or :class:`~.rows.FeatureRows` when read in chunks or shared
    between processes. ``val_given``: the trusted rows' given labels (the CIFAR protocol),
    None for a separate trusted set. ``clean``: only to measure label accuracy.
    """

    views: list[tuple[torch.Tensor | FeatureRows, torch.Tensor]]
    init: torch.Tensor  # (N, C) one-hot given labels: the labels both pipelines start from
    val_labels: torch.Tensor  # (V,) long
    num_classes: int
    val_given: torch.Tensor | None = None
    clean: torch.Tensor | None = None

    @classmethod
    def build(cls, features: torch.Tensor | FeatureRows, init_labels: torch.Tensor, val_features: torch.Tensor,
              val_labels: torch.Tensor, *, features_view2: torch.Tensor | FeatureRows | None = None,
              val_features_view2: torch.Tensor | None = None, val_given: torch.Tensor | None = None,
              clean_labels: torch.Tensor | None = None) -> "Problem":
        """From the API layer's tensors: ``init_labels`` (N, C) one-hot given labels."""
        views = [(_tensor_unless_streamed(features), val_features)]
        if features_view2 is not None:
            views.append((_tensor_unless_streamed(features_view2), val_features_view2))
        return cls(views, init_labels, val_labels, init_labels.shape[1], val_given, clean_labels)

    @property
    def device(self) -> torch.device:
        return self.views[0][0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.views[0][0].dtype

    @property
    def num_rows(self) -> int:
        return len(self.given)

    def __post_init__(self) -> None:
        self.given = self.init.argmax(1)  # (N,) the given labels

    @property
    def val_onehot(self) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.val_labels, self.num_classes).to(self.dtype)

    def counted_transition(self, *, shrink: bool = False) -> torch.Tensor | None:
        """``T[y, ỹ]`` counted on the trusted pairs (None without their given labels),
        shrunk toward a pooled keep rate if ``shrink`` (``posterior.shrunk_transition``)."""
        if self.val_given is None:
            return None
        return counted_transition(self.val_labels, self.val_given, self.num_classes, shrink=shrink).to(self.dtype)


def _tensor_unless_streamed(features: torch.Tensor | FeatureRows) -> torch.Tensor | FeatureRows:
    if isinstance(features, FeatureRows) and not features.streamed:
        return features.whole()
    return features


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has done the work queued so far.

    CUDA runs ahead of the host: without waiting, a stage would be charged for the
    launches only and the next one for the rest. Never called inside the paper's epochs.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
