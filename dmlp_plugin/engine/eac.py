"""EAC, extrinsic auxiliary correction: a linear head trained on the current labels.

The head ``C`` is trained with cross-entropy to the current (hard) labels, a confidence
penalty (``+ w·Σ p log p``, which discourages over-confident predictions) and a
class-balance term ``KL(π ‖ mean p)``. Every ``T`` epochs its predictions are mixed into
the labels, ``Y ← (1 − η)·Y + η·C(F)`` (the paper's Eq. 11).

Softmax is applied once, to the logits. The official script's head ends in
``nn.Softmax`` and then applies softmax again inside the losses (two to four times in
all), which flattens the distributions so much that the entropy and prior terms are
nearly constant; its prior weight of 2200 compensates for that. With a single softmax
the balance term works at weight ~1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["EACHead"]


class EACHead:
    """A linear classifier on frozen features, trained by mini-batch Adam.

    Parameters
    ----------
    dim, num_classes : int
    prior : (C,) tensor
        Target class distribution of the balance term.
    lr, betas, weight_decay
        Adam settings.
    conf_weight, balance_weight : float
        Weights of the confidence penalty and the balance term.
    generator : torch.Generator
        Source of the initial weights (CPU), for determinism.
    """

    def __init__(self, dim: int, num_classes: int, *, prior: torch.Tensor, lr: float = 0.03,
                 betas: tuple[float, float] = (0.5, 0.999), weight_decay: float = 3e-4,
                 conf_weight: float = 0.4, balance_weight: float = 1.0,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> None:
        bound = 1.0 / dim ** 0.5  # nn.Linear's default initialisation
        weight = (torch.rand(num_classes, dim, generator=generator) * 2 - 1) * bound
        bias = (torch.rand(num_classes, generator=generator) * 2 - 1) * bound
        self.weight = weight.to(device).requires_grad_()
        self.bias = bias.to(device).requires_grad_()
        self.prior = prior
        self.conf_weight = conf_weight
        self.balance_weight = balance_weight
        self.optimizer = torch.optim.Adam([self.weight, self.bias], lr=lr, betas=betas,
                                          weight_decay=weight_decay)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.weight, self.bias)

    @torch.no_grad()
    def predict_proba(self, features: torch.Tensor, *, chunk: int = 65536) -> torch.Tensor:
        """``softmax(C(F))`` for any number of rows, chunked to bound memory."""
        return torch.cat([torch.softmax(self.logits(f), -1) for f in features.split(chunk)])

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """CE to ``targets`` (class indices) + confidence penalty + balance KL."""
        logits = self.logits(features)
        log_p = torch.log_softmax(logits, -1)
        p = log_p.exp()
        loss = F.nll_loss(log_p, targets)
        if self.conf_weight:
            loss = loss + self.conf_weight * (p * log_p).sum(-1).mean()
        if self.balance_weight:
            mean_p = p.mean(0).clamp_min(1e-12)
            loss = loss + self.balance_weight * (self.prior * (self.prior.clamp_min(1e-12).log()
                                                               - mean_p.log())).sum()
        return loss

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_steps(self, features: torch.Tensor, targets: torch.Tensor,
                    batches: torch.Tensor) -> torch.Tensor:
        """One Adam step per row of ``batches`` (``(S, m)`` indices into ``features``).

        Returns the mean loss as a tensor (no host synchronisation).
        """
        total = features.new_zeros(())
        for rows in batches:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(features[rows], targets[rows])
            loss.backward()
            self.optimizer.step()
            total = total + loss.detach()
        return total / max(1, len(batches))
