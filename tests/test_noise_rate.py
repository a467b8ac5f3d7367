"""Residual-noise estimates without clean labels (``dmlp_plugin.noise_rate``), on hand-made results."""

from __future__ import annotations

import numpy as np
import pytest

from dmlp_plugin import PurifyResult
from dmlp_plugin.errors import InputError
from dmlp_plugin.noise_rate import estimate_noise_rate


def hand_made(soft: np.ndarray, given: np.ndarray, trusted: np.ndarray, **metadata) -> PurifyResult:
    return PurifyResult.from_soft_labels(soft, given, trusted_indices=trusted, metadata=metadata)


def test_agreement_solves_for_the_purified_accuracy():
    c, n_trusted, n = 10, 100, 1100
    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, n)
    given = labels.copy()
    given[:40] = (labels[:40] + 1) % c  # trusted rows: g = 0.6
    given[n_trusted:n_trusted + 500] = (labels[n_trusted:n_trusted + 500] + 3) % c  # purified rows: u = 0.5
    result = hand_made(np.eye(c, dtype=np.float32)[labels], given, np.arange(n_trusted))
    g, u = 0.6, 0.5
    q = (1 - g) / (c - 1)
    assert agreement(result) == pytest.approx(1 - (u - q) / (g - q))
    assert 0.15 < agreement(result) < 0.25
    # without trusted rows, or with given labels at chance on them, it has nothing to go on
    assert agreement(hand_made(np.eye(c, dtype=np.float32)[labels], given, np.zeros(0, np.int64))) is None
    chance = labels.copy()
    chance[:90] = (labels[:90] + 1) % c
    assert agreement(hand_made(np.eye(c, dtype=np.float32)[labels], chance, np.arange(n_trusted))) is None


def test_entropy_matched_tempers_the_soft_labels_to_the_trusted_log_loss():
    rng = np.random.default_rng(1)
    soft = rng.dirichlet(np.ones(4) * 0.7, size=500).astype(np.float32)
    given = soft.argmax(1)
    trusted = np.arange(50)
    keep = np.ones(500, bool)
    keep[trusted] = False
    result = hand_made(soft, given, trusted)
    confidence = estimate_noise_rate(result, "confidence")
    assert confidence == pytest.approx(1 - soft[keep].max(1).mean(), rel=1e-5)
    assert entropy(result) is None  # no candidate log-loss recorded
    mean_entropy = -(soft[keep] * np.log(soft[keep])).sum(1).mean()

    def at(nll: float) -> float:
        return entropy(
            hand_made(soft, given, trusted, selected="round 2", candidate_nll={"round 1": 9.0, "round 2": nll}))

    assert at(mean_entropy) == pytest.approx(confidence, abs=1e-4)  # calibrated: unchanged
    assert at(mean_entropy + 0.2) > confidence + 0.01  # overconfident labels: a higher estimate
    assert at(mean_entropy - 0.2) < confidence - 0.01


def agreement(result: PurifyResult) -> float | None:
    return estimate_noise_rate(result, "agreement")


def entropy(result: PurifyResult) -> float | None:
    return estimate_noise_rate(result, "entropy")


def test_auto_prefers_entropy_then_agreement_then_confidence():
    rng = np.random.default_rng(2)
    soft = rng.dirichlet(np.ones(5), size=300).astype(np.float32)
    labels = soft.argmax(1)
    given = np.where(rng.random(300) < 0.3, (labels + 1) % 5, labels)
    plain = hand_made(soft, given, np.zeros(0, np.int64))
    assert plain.estimated_noise_rate() == pytest.approx(estimate_noise_rate(plain, "confidence"))
    trusted = hand_made(soft, given, np.arange(40))
    assert trusted.estimated_noise_rate() == pytest.approx(agreement(trusted))
    recorded = hand_made(soft, given, np.arange(40), selected="logistic", candidate_nll={"logistic": 1.0})
    assert recorded.estimated_noise_rate() == pytest.approx(entropy(recorded))
    with pytest.raises(InputError, match="unknown noise-rate estimate 'best'"):
        estimate_noise_rate(plain, "best")


def test_entropy_reads_the_chosen_candidate_of_either_metadata_layout():
    rng = np.random.default_rng(4)
    soft = rng.dirichlet(np.ones(4), size=200).astype(np.float32)
    given = soft.argmax(1)
    old = hand_made(soft, given, np.arange(20), selected="network", candidate_nll={"logistic": 0.7, "network": 1.1})
    new = hand_made(soft, given, np.arange(20), candidates=[
        {"name": "logistic", "trusted_nll": 0.7, "label_accuracy": None, "selected": False},
        {"name": "network", "trusted_nll": 1.1, "label_accuracy": None, "selected": True}])
    assert entropy(new) == pytest.approx(entropy(old))
    assert entropy(new) != pytest.approx(entropy(hand_made(soft, given, np.arange(20), selected="logistic",
                                                           candidate_nll={"logistic": 0.7})))
    unchosen = hand_made(soft, given, np.arange(20), candidates=[{"name": "a", "trusted_nll": 0.7, "selected": False}])
    assert entropy(unchosen) is None


def test_noise_rate_does_not_import_the_result_module():
    # result.py calls noise_rate; the reverse import would close a cycle
    import ast
    from pathlib import Path

    import dmlp_plugin.noise_rate as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any(name and name.split(".")[-1] == "result" for name in imported)
