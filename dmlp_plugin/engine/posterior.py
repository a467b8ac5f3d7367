"""Label posterior from a classifier and the measured noise transition (not in the paper).

Given a classifier's ``p(y | x)`` and the noise transition ``T[y, ỹ] = P(ỹ | y)``, the
posterior of the true label of a sample whose given label is ``ỹ`` is

    p(y | x, ỹ) ∝ p(y | x) · T[y, ỹ]

(assuming the label noise depends on ``x`` only through ``y``). It keeps a given label
unless the classifier's evidence against it outweighs how reliable labels of that class
were measured to be: at 20% noise a label is flipped only on strong evidence, at 90%
on weak evidence. ``T`` is counted on the trusted set, whose given and clean labels are
both known in the CIFAR protocol; otherwise it is estimated from the classifier itself.
"""

from __future__ import annotations

import torch

__all__ = ["transition_from_pairs", "transition_from_predictions", "label_posterior"]


def transition_from_pairs(clean: torch.Tensor, given: torch.Tensor, num_classes: int, *,
                          smoothing: float = 1.0) -> torch.Tensor:
    """``T[y, ỹ]`` counted from (clean, given) label pairs, with additive smoothing."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=clean.device)
    counts.index_put_((clean.long(), given.long()),
                      torch.ones_like(clean, dtype=torch.float64), accumulate=True)
    counts += smoothing / num_classes
    return (counts / counts.sum(1, keepdim=True)).float()


def transition_from_predictions(probs: torch.Tensor, given: torch.Tensor, num_classes: int,
                                *, smoothing: float = 1.0) -> torch.Tensor:
    """``T[y, ỹ]`` estimated from soft predictions: the expected joint of (y, ỹ)."""
    joint = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=probs.device)
    joint.index_add_(1, given.long(), probs.double().T)
    joint += smoothing / num_classes
    return (joint / joint.sum(1, keepdim=True)).float()


def label_posterior(probs: torch.Tensor, given: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
    """``p(y | x, ỹ) ∝ probs[:, y] · T[y, ỹ]``, rows normalised. ``probs``: (N, C)."""
    post = probs * transition.T[given.long()]
    return post / post.sum(1, keepdim=True).clamp_min(1e-30)
