"""``T`` counted on few trusted pairs, shrunk toward a pooled keep rate (``shrunk_transition``)."""

from __future__ import annotations

import torch

from dmlp_plugin import PurifyConfig
from dmlp_plugin.engine import Problem
from dmlp_plugin.engine.calibrate import Calibrator
from dmlp_plugin.engine.ls_head import trusted_folds
from dmlp_plugin.engine.posterior import heldout_log_transition, shrunk_transition, transition_from_pairs
from engine_fixtures import gen, one_torch_thread  # noqa: F401  (autouse)


def noisy_pairs(g: torch.Generator, per_class: int, classes: int, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` clean labels of each class, and given labels drawn from ``truth[y]``."""
    clean = torch.arange(classes).repeat_interleave(per_class)
    given = torch.multinomial(truth[clean], 1, generator=g).squeeze(1)
    return clean, given


def symmetric(classes: int, noise: float) -> torch.Tensor:
    """DivideMix's symmetric noise: a label is redrawn uniformly with probability ``noise``."""
    return (1 - noise) * torch.eye(classes) + noise / classes


def pair_flips(classes: int, rate: float) -> torch.Tensor:
    """Each class flips to the next one with probability ``rate``."""
    return (1 - rate) * torch.eye(classes) + rate * torch.eye(classes).roll(1, 1)


def error(t: torch.Tensor, truth: torch.Tensor) -> float:
    return float((t - truth).abs().sum(1).mean())  # mean L1 distance of the rows


def test_ten_pairs_a_class_under_symmetric_noise_come_much_closer_to_the_truth():
    truth = symmetric(10, 0.9)
    counted, shrunk = [], []
    for seed in range(20):
        clean, given = noisy_pairs(gen(seed), 10, 10, truth)
        counted.append(error(transition_from_pairs(clean, given, 10), truth))
        shrunk.append(error(shrunk_transition(clean, given, 10), truth))
    # A counted row misplaces most of its mass; the pooled rate rests on all 100 pairs.
    assert sum(shrunk) < 0.5 * sum(counted)


def test_flips_between_classes_that_the_counts_show_are_kept():
    truth = pair_flips(5, 0.4)
    clean, given = noisy_pairs(gen(1), 200, 5, truth)
    t = shrunk_transition(clean, given, 5)
    flips = t[torch.arange(5), (torch.arange(5) + 1) % 5]
    assert torch.all((flips - 0.4).abs() < 0.08)  # shrunk fully, they would be near 0.1


def test_rows_are_distributions_and_a_class_without_pairs_gets_the_pooled_rate():
    clean = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    given = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])  # 6 of 8 kept; class 2 has no pairs
    t = shrunk_transition(clean, given, 3)
    torch.testing.assert_close(t.sum(1), torch.ones(3))
    assert bool((t > 0).all())
    keep = (6 + 1) / (8 + 2)
    torch.testing.assert_close(t[2], torch.tensor([(1 - keep) / 2, (1 - keep) / 2, keep]))


def test_the_held_out_transition_shrinks_each_fold_without_its_own_pairs():
    g = gen(3)
    clean, given = noisy_pairs(g, 20, 4, symmetric(4, 0.5))
    folds = trusted_folds(len(clean), 5, gen(4), torch.device("cpu"))
    out = heldout_log_transition(clean, given, folds, 4, shrink=True)
    for mask in folds:
        expected = shrunk_transition(clean[~mask], given[~mask], 4).log().T[given[mask]]
        torch.testing.assert_close(out[mask], expected)


def test_the_default_calibrator_shrinks_and_the_option_turns_it_off():
    clean, given = noisy_pairs(gen(5), 10, 4, symmetric(4, 0.8))
    problem = Problem.build(torch.zeros(8, 1), torch.nn.functional.one_hot(torch.arange(8) % 4, 4).float(),
                            torch.zeros(len(clean), 1), clean, val_given=given)
    folds = trusted_folds(len(clean), 5, gen(9), torch.device("cpu"))
    assert PurifyConfig().transition_shrinkage
    torch.testing.assert_close(Calibrator(problem, PurifyConfig(), folds).transition,
                               shrunk_transition(clean, given, 4))
    torch.testing.assert_close(Calibrator(problem, PurifyConfig(transition_shrinkage=False), folds).transition,
                               transition_from_pairs(clean, given, 4))


def dense_evidence_transition(clean: torch.Tensor, given: torch.Tensor, c: int) -> torch.Tensor:
    """The same estimate written over all C² entries: the reference for the summed-over-pairs
    evidence ``shrunk_transition`` uses."""
    from dmlp_plugin.engine.posterior import SHRINKAGE_GRID

    counts = torch.zeros(c, c, dtype=torch.float64)
    counts.index_put_((clean, given), torch.ones(len(clean), dtype=torch.float64), accumulate=True)
    keep = (counts.trace() + 1) / (counts.sum() + 2)
    prior = keep * torch.eye(c, dtype=torch.float64) + (1 - keep) / (c - 1) * (1 - torch.eye(c, dtype=torch.float64))
    alphas = torch.tensor(SHRINKAGE_GRID, dtype=torch.float64).view(-1, 1, 1)
    lg = torch.lgamma
    evidence = ((lg(alphas[:, :, 0]) - lg(alphas[:, :, 0] + counts.sum(1))).sum(1)
                + (lg(alphas * prior + counts) - lg(alphas * prior)).sum((1, 2)))
    t = counts + alphas[evidence.argmax()] * prior
    return (t / t.sum(1, keepdim=True)).float()


def test_the_evidence_summed_over_occurring_pairs_equals_the_sum_over_every_entry():
    g = gen(11)
    for _ in range(50):
        c = int(torch.randint(2, 12, (1,), generator=g))
        n = int(torch.randint(0, 150, (1,), generator=g))
        rate = float(torch.rand(1, generator=g))
        clean, given = noisy_pairs(g, max(n // c, 0), c, symmetric(c, rate))
        torch.testing.assert_close(shrunk_transition(clean, given, c), dense_evidence_transition(clean, given, c))
