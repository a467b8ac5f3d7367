"""The peers of benchmarks/peers.py on planted Gaussian clusters with known noise."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("cleanlab")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import peers  # noqa: E402


def planted(n: int, d: int, k: int, sep: float, rate: float, seed: int, num_trusted: int):
    """Gaussian clusters (unit variance around centres drawn with scale ``sep``), symmetric
    noise that moves a ``rate`` fraction of labels to a uniformly random other class, and a
    random trusted set."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * sep
    clean = rng.integers(0, k, n)
    x = (centres[clean] + rng.normal(size=(n, d))).astype(np.float32)
    noisy = clean.copy()
    flip = rng.random(n) < rate
    noisy[flip] = (clean[flip] + rng.integers(1, k, flip.sum())) % k
    trusted = np.sort(rng.permutation(n)[:num_trusted])
    keep = np.ones(n, bool)
    keep[trusted] = False
    return x, clean, noisy, trusted, keep


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small fits: torch's thread pool only adds waiting, most of all on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clusters():
    return planted(2000, 16, 4, 1.0, 0.4, seed=0, num_trusted=200)


@pytest.mark.parametrize("name", ["default", "cleanlab", "knn", "trusted-probe", "fc-logistic"])
def test_each_peer_beats_the_given_labels_at_40_percent_noise(clusters, name):
    x, clean, noisy, trusted, keep = clusters
    given = peers.given(x, noisy, trusted, clean[trusted]).labels
    given_acc = (given[keep] == clean[keep]).mean()
    assert 0.55 < given_acc < 0.65  # the planted noise
    result = peers.PEERS[name](x, noisy, trusted, clean[trusted])
    assert result.labels.shape == clean.shape
    np.testing.assert_array_equal(result.labels[trusted], clean[trusted])  # trusted rows keep their labels
    acc = (result.labels[keep] == clean[keep]).mean()
    assert acc > given_acc + 0.1, f"{name}: {acc:.3f} vs given {given_acc:.3f}"
    assert result.seconds >= 0


def test_fit_logistic_matches_scikit_learn():
    import torch
    from sklearn.linear_model import LogisticRegression

    x, clean, noisy, _, _ = planted(600, 8, 3, 0.8, 0.3, seed=1, num_trusted=0)
    for C in (0.01, 1.0):
        ours = peers.fit_logistic(x, noisy, C=C, num_classes=3, tol=1e-7, dtype=torch.float64)
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(x, noisy)
        np.testing.assert_allclose(ours.proba(x), ref.predict_proba(x), atol=2e-4)


def test_forward_correction_with_the_identity_is_plain_logistic_regression():
    x, _, noisy, _, _ = planted(500, 6, 3, 1.0, 0.3, seed=2, num_trusted=0)
    plain = peers.fit_logistic(x, noisy, C=0.1, num_classes=3)
    identity = peers.fit_logistic(x, noisy, C=0.1, num_classes=3, transition=np.eye(3))
    np.testing.assert_allclose(plain.proba(x), identity.proba(x), atol=1e-3)


def test_forward_correction_undoes_a_known_flip():
    # Every label of class 0 is given as 1 and every 1 as 0: plain logistic regression
    # learns the swap, the forward-corrected one (through the true T) learns the classes.
    x, clean, _, _, _ = planted(900, 4, 3, 2.0, 0.0, seed=3, num_trusted=0)
    swap = np.array([1, 0, 2])
    given = swap[clean]
    T = np.eye(3)[swap]  # T[i, j] = 1 iff j = swap[i]
    model = peers.fit_logistic(x, given, C=1.0, num_classes=3, transition=T * 0.98 + 0.02 / 3)
    assert (model.proba(x).argmax(1) == clean).mean() > 0.9


def test_count_transition():
    T = peers.count_transition(np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1]), 2, prior=0.0)
    np.testing.assert_allclose(T, [[1 / 3, 2 / 3], [0, 1]])
    T = peers.count_transition(np.array([0]), np.array([0]), 3, prior=0.5)
    np.testing.assert_allclose(T.sum(1), 1.0)
    assert (T > 0).all()


def test_fc_logistic_chooses_C_on_the_held_out_trusted_rows():
    # Plenty of rows in few dimensions: weak regularisation wins on the held-out rows.
    x, clean, noisy, trusted, _ = planted(3000, 10, 4, 1.0, 0.4, seed=0, num_trusted=200)
    plentiful = peers.fc_logistic(x, noisy, trusted, clean[trusted])
    assert plentiful.info["C"] == 1.0, plentiful.info
    # Few rows in many weakly informative dimensions: the weak C overfits and loses.
    for seed in (0, 1):
        x, clean, noisy, trusted, _ = planted(400, 200, 4, 0.25, 0.4, seed=seed, num_trusted=100)
        scarce = peers.fc_logistic(x, noisy, trusted, clean[trusted])
        assert scarce.info["C"] < 1.0, scarce.info
        scores = scarce.info["trusted_acc"]
        assert scores[scarce.info["C"]] == max(scores.values())
        assert scores[1.0] < scores[scarce.info["C"]]


def test_fc_logistic_scores_on_the_trusted_rows():
    # The held-out scores are accuracies against the trusted labels it is given: with
    # random "clean" labels on the trusted rows no C scores much above chance (1/4), and
    # the held-out scores of the real ones are high.
    x, clean, noisy, trusted, _ = planted(800, 8, 4, 1.0, 0.4, seed=4, num_trusted=150)
    real = peers.fc_logistic(x, noisy, trusted, clean[trusted])
    assert max(real.info["trusted_acc"].values()) > 0.8
    scrambled = np.random.default_rng(0).integers(0, 4, len(trusted))
    fake = peers.fc_logistic(x, noisy, trusted, scrambled)
    assert max(fake.info["trusted_acc"].values()) < 0.45
    np.testing.assert_array_equal(fake.labels[trusted], scrambled)


def test_knn_chooses_k_without_clean_votes():
    x, clean, noisy, trusted, keep = planted(1500, 8, 4, 1.2, 0.4, seed=5, num_trusted=150)
    result = peers.knn_relabel(x, noisy, trusted, clean[trusted], ks=(1, 25), rounds=(1,))
    # One neighbour copies one noisy label (about 60% right); 25 neighbours vote the noise away.
    assert result.info["k"] == 25
    assert result.info["trusted_acc"]["25,1"] > result.info["trusted_acc"]["1,1"] + 0.1


def test_cosine_neighbours_are_exact_and_cached(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    neigh = peers.cosine_neighbours(x, 4, cache_dir=tmp_path)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    np.testing.assert_array_equal(neigh, np.argsort(-sim, axis=1)[:, :4])
    assert len(list(tmp_path.glob("knn-*.npy"))) == 1
    peers._NEIGHBOURS.clear()
    np.testing.assert_array_equal(peers.cosine_neighbours(x, 4, cache_dir=tmp_path), neigh)
