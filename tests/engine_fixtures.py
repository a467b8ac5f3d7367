"""Shared data and helpers for the engine and purify tests.

Import what a module uses (``from engine_fixtures import ...``); the autouse fixture
``one_torch_thread`` must be imported by name to take effect in a module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from dmlp_plugin.noise import make_noisy_labels


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run torch single-threaded: the engine's tiny matrix products are much slower with
    several threads on a busy machine, and results must not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int) -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(seed)


@dataclass
class Planted:
    """Gaussian clusters with known means, labels with known noise, a trusted subset."""

    features: np.ndarray  # (N, d) float32
    clean: np.ndarray  # (N,) int64
    given: np.ndarray  # (N,) int64, noisy
    trusted: np.ndarray  # (V,) int64 indices into the N samples
    means: np.ndarray  # (C, d)

    @property
    def num_classes(self) -> int:
        return len(self.means)

    def bayes_accuracy(self) -> float:
        """Accuracy of the nearest true mean: the Bayes classifier of x alone (unit
        isotropic noise, equal priors)."""
        dist = ((self.features[:, None, :] - self.means[None]) ** 2).sum(-1)
        return float((dist.argmin(1) == self.clean).mean())

    def clean_linear_accuracy(self) -> float:
        """Training accuracy of a least-squares linear classifier fitted to the clean labels."""
        x = torch.from_numpy(np.c_[self.features.astype(np.float64), np.ones(len(self.features))])
        y = torch.nn.functional.one_hot(torch.from_numpy(self.clean), self.num_classes).double()
        w = torch.linalg.lstsq(x, y).solution  # torch: numpy's threaded lstsq is slow on a busy machine
        return float(((x @ w).argmax(1).numpy() == self.clean).mean())

    def purify_kwargs(self) -> dict:
        """The CIFAR protocol: trusted samples inside the training set."""
        return dict(val_indices=self.trusted, val_labels=self.clean[self.trusted])


def planted_clusters(n: int = 3000, num_classes: int = 5, dim: int = 24, *, separation: float = 2.5,
                     rate: float = 0.5, num_trusted: int = 200, seed: int = 0) -> Planted:
    """``num_classes`` unit-variance Gaussian clusters whose means lie ``separation`` from
    the origin in random directions, symmetric noise in the DivideMix convention
    (``int(rate·N)`` samples relabelled uniformly over all classes), and a random trusted
    subset.

    Data, noise and trusted set come from three independent child seeds, so which
    samples are noisy says nothing about which are trusted. With the defaults the Bayes
    classifier of the features alone is about 87% accurate.
    """
    data_seq, noise_seq, trusted_seq = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(data_seq)
    means = rng.normal(size=(num_classes, dim))
    means *= separation / np.linalg.norm(means, axis=1, keepdims=True)
    clean = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    features = (means[clean] + rng.normal(size=(n, dim))).astype(np.float32)
    noise_seed = int(noise_seq.generate_state(1)[0])
    given = make_noisy_labels(clean, kind="symmetric", rate=rate, num_classes=num_classes,
                              convention="dividemix", seed=noise_seed).noisy_labels
    trusted = np.sort(np.random.default_rng(trusted_seq).choice(n, num_trusted, replace=False))
    return Planted(features, clean, given.astype(np.int64), trusted.astype(np.int64), means)


def assert_on_simplex(rows, atol: float = 1e-5) -> None:
    rows = torch.as_tensor(rows)
    assert bool((rows >= 0).all()), f"negative entry {float(rows.min())}"
    sums = rows.sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=atol), \
        f"row sums in [{float(sums.min())}, {float(sums.max())}]"


def engine_inputs(data: Planted) -> dict:
    """Tensors for :meth:`dmlp_plugin.engine.Problem.build` in the CIFAR protocol
    (trusted rows removed from the training rows), as ``purify_dataset`` prepares them."""
    train = np.setdiff1d(np.arange(len(data.clean)), data.trusted)
    c = data.num_classes
    return dict(
        features=torch.from_numpy(data.features[train]),
        init_labels=torch.nn.functional.one_hot(torch.from_numpy(data.given[train]), c).float(),
        val_features=torch.from_numpy(data.features[data.trusted]),
        val_labels=torch.from_numpy(data.clean[data.trusted]),
        val_given=torch.from_numpy(data.given[data.trusted]),
        clean_labels=torch.from_numpy(data.clean[train]),
    )


def run_engine(inputs: dict, config, generator: torch.Generator | None = None, **callbacks):
    """:func:`dmlp_plugin.engine.run` on :func:`engine_inputs`-style tensors (seed 0 unless
    ``generator``), as ``purify_dataset`` calls it: ``callbacks`` are the pipeline's own
    (``on_epoch`` for the paper's loop; ``on_round``, ``on_progress`` for the default)."""
    from dmlp_plugin import engine

    return engine.run(engine.Problem.build(**inputs), config, generator or gen(0), **callbacks)
