"""A fast linear probe: multinomial logistic regression on frozen features, in torch.

Used to score feature extractors (k-means, SimCLR) and by the benchmarks. Full-batch
L-BFGS converges in a few dozen passes for the sizes we meet (50k x 512 fits easily in
memory); mini-batch Adam is there for sets too large to hold as one batch on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError, LabelError, ShapeError
from ..validation import as_labels
from ..device import choose_device

__all__ = ["LinearClassifier", "fit_linear_classifier", "linear_probe"]

ArrayLike = np.ndarray | torch.Tensor


@dataclass
class LinearClassifier:
    """A fitted linear classifier ``logits = ((x - mean) / std) @ weight.T + bias``.

    Attributes
    ----------
    weight : torch.Tensor
        ``(C, D)`` float32, on CPU.
    bias : torch.Tensor
        ``(C,)`` float32.
    mean, std : torch.Tensor
        ``(D,)`` standardisation fitted on the training features (zeros and ones when
        ``standardize=False``).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def decision_function(self, x: ArrayLike, *, batch_size: int = 65536) -> np.ndarray:
        """``(N, C)`` float32 logits for ``(N, D)`` features."""
        x = _as_features(x, "x")
        if x.shape[1] != self.weight.shape[1]:
            raise ShapeError(f"x has {x.shape[1]} features; the classifier was fitted on {self.weight.shape[1]}")
        out = np.empty((len(x), self.num_classes), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                xb = (x[start:start + batch_size].float() - self.mean) / self.std
                out[start:start + batch_size] = (xb @ self.weight.T + self.bias).numpy()
        return out

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """``(N, C)`` softmax probabilities."""
        return torch.softmax(torch.from_numpy(self.decision_function(x)), dim=1).numpy()

    def predict(self, x: ArrayLike) -> np.ndarray:
        """``(N,)`` int64 predicted classes."""
        return self.decision_function(x).argmax(1).astype(np.int64)

    def score(self, x: ArrayLike, y: ArrayLike) -> float:
        """Accuracy of :meth:`predict` against labels ``y``."""
        y = _as_labels(y, "y", len(x))
        return float((self.predict(x) == y.numpy()).mean())


def fit_linear_classifier(
    x: ArrayLike,
    y: ArrayLike,
    *,
    num_classes: int | None = None,
    weight_decay: float = 1e-3,
    epochs: int = 100,
    method: Literal["lbfgs", "adam"] = "lbfgs",
    standardize: bool = True,
    batch_size: int = 4096,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> LinearClassifier:
    """Fit multinomial logistic regression with an L2 penalty on the weights.

    Parameters
    ----------
    x : (N, D) array
        Features, any float dtype (float16 files are upcast).
    y : (N,) int array
        Labels in ``[0, num_classes)``.
    num_classes : int, optional
        Defaults to ``y.max() + 1``.
    weight_decay : float
        ``λ`` in ``mean CE + λ/2 ‖W‖²`` (the bias is not penalised). The default suits
        standardised features with tens of thousands of samples.
    epochs : int
        ``"lbfgs"``: L-BFGS iterations, each one full pass (plus line-search passes).
        ``"adam"``: passes over shuffled mini-batches.
    method : {"lbfgs", "adam"}
        Full-batch L-BFGS (deterministic, the default) or mini-batch Adam.
    standardize : bool
        Centre and scale each feature by its training mean and std first.
    batch_size, lr : int, float
        Mini-batch size and learning rate of ``"adam"``; unused by ``"lbfgs"``.
    device : str or torch.device, optional
        CUDA when available by default.
    seed : int
        Seeds the mini-batch order of ``"adam"``; L-BFGS starts from zero and needs none.

    Returns
    -------
    LinearClassifier
        Weights on CPU, with the standardisation folded in as ``mean``/``std``.
    """
    x = _as_features(x, "x")
    y = _as_labels(y, "y", len(x))
    if num_classes is None:
        num_classes = int(y.max()) + 1
    if int(y.max()) >= num_classes:
        raise LabelError(f"labels reach {int(y.max())} but num_classes={num_classes}")
    if weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if method not in ("lbfgs", "adam"):
        raise ConfigError(f"unknown probe method {method!r}; choose 'lbfgs' or 'adam'")
    dev = choose_device(device)

    xf = x.float()
    if standardize:
        mean = xf.mean(0)
        # a constant feature carries nothing; scale 1 keeps it at zero instead of NaN
        std = xf.std(0).clamp_min(1e-6)
    else:
        mean = torch.zeros(x.shape[1])
        std = torch.ones(x.shape[1])
    xs = ((xf - mean) / std).to(dev)
    ys = y.to(dev)
    weight = torch.zeros(num_classes, x.shape[1], device=dev, requires_grad=True)
    bias = torch.zeros(num_classes, device=dev, requires_grad=True)

    def objective(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(xb @ weight.T + bias, yb) + 0.5 * weight_decay * weight.pow(2).sum()

    if method == "lbfgs":
        opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=epochs, history_size=20,
                                tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = objective(xs, ys)
            loss.backward()
            return loss

        opt.step(closure)
    else:
        opt = torch.optim.Adam([weight, bias], lr=lr)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(len(xs), generator=gen).split(batch_size):
                idx = idx.to(dev)
                opt.zero_grad()
                objective(xs[idx], ys[idx]).backward()
                opt.step()
    return LinearClassifier(weight.detach().cpu(), bias.detach().cpu(), mean, std)


def linear_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    *,
    weight_decay: float = 1e-3,
    epochs: int = 100,
    method: Literal["lbfgs", "adam"] = "lbfgs",
    standardize: bool = True,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> float:
    """Test accuracy of a linear classifier fitted on ``(train_x, train_y)``.

    Options are those of :func:`fit_linear_classifier`; the number of classes is taken
    from both label arrays so a class missing from the test set is harmless.

    Returns
    -------
    float
        Accuracy in ``[0, 1]`` on ``(test_x, test_y)``.
    """
    test_y = _as_labels(test_y, "test_y", len(test_x))
    train_y = _as_labels(train_y, "train_y", len(train_x))
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    clf = fit_linear_classifier(train_x, train_y, num_classes=num_classes, weight_decay=weight_decay,
                                epochs=epochs, method=method, standardize=standardize,
                                device=device, seed=seed)
    return clf.score(test_x, test_y)


def _as_features(x: ArrayLike, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim != 2:
        raise ShapeError(f"{name} must be (N, D) features, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise InputError(f"{name} must be floating point features, got {t.dtype}")
    if len(t) == 0:
        raise ShapeError(f"{name} is empty")
    return t.detach().cpu()


def _as_labels(y: ArrayLike, name: str, n: int) -> torch.Tensor:
    return torch.from_numpy(as_labels(y, name, length=n))
