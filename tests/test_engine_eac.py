"""EAC: when predictions are mixed into the labels, and how much, in both pipelines: the
paper's loop (the linear head's softmax, every ``T`` epochs) and the default pipeline's
least-squares rounds (the head's posterior through ``T``, once per round)."""

from __future__ import annotations

import pytest
import torch

from dmlp_plugin import PurifyConfig
from dmlp_plugin.engine import paper_loop
from dmlp_plugin.engine.calibrate import Calibrator
from dmlp_plugin.engine.ls_head import LeastSquaresHead
from dmlp_plugin.engine.paper_loop import METRICS
from engine_fixtures import (assert_on_simplex, engine_inputs, one_torch_thread, planted_clusters,  # noqa: F401
                             run_engine)

MIXED = METRICS.index("eac_mixed")


@pytest.fixture(scope="module")
def inputs():
    return engine_inputs(planted_clusters(n=600, dim=8, num_trusted=100, seed=11))


class PaperRecorder:
    """Snapshots every view's labels (original order) after each epoch of the paper's loop,
    through ``on_epoch``, and the targets each mixing step computed (each view's head's
    softmax, in view order, before the two views swap them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.views: list = []
        self.labels: list[list[torch.Tensor]] = []  # [epoch][view] -> (N, C)
        self.mixed_flags: list[bool] = []
        self.targets: dict[int, list[torch.Tensor]] = {}  # 0-based epoch -> per-view targets
        init, predictions = paper_loop._View.__init__, paper_loop._View.head_predictions

        def recording_init(view, *args, **kwargs):
            init(view, *args, **kwargs)
            self.views.append(view)

        def recording_predictions(view):
            out = predictions(view)
            self.targets.setdefault(len(self.labels), []).append(out[0].clone())
            return out

        monkeypatch.setattr(paper_loop._View, "__init__", recording_init)
        monkeypatch.setattr(paper_loop._View, "head_predictions", recording_predictions)

    def __call__(self, epoch: int, metrics: torch.Tensor) -> None:
        assert epoch == len(self.labels)
        self.labels.append([view.flat_labels().clone() for view in self.views])
        self.mixed_flags.append(bool(metrics[MIXED]))

    def changed_after(self, start: list[torch.Tensor]) -> list[int]:
        """1-based epochs after which any view's labels differ from the epoch before."""
        before, out = start, []
        for epoch, now in enumerate(self.labels, 1):
            if any(not torch.equal(a, b) for a, b in zip(before, now)):
                out.append(epoch)
            before = now
        return out


class RoundRecorder:
    """The default pipeline's least-squares rounds: the labels each round's head is fitted
    on (the labels after the rounds before it) and the posterior each round mixes in, per
    view (``[round][view]``, 0-based rounds)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, views: int = 1) -> None:
        self.n_views = views
        self.fitted_on: list[torch.Tensor] = []
        self.mixed_in: list[torch.Tensor] = []
        fit, round_target = LeastSquaresHead.fit, Calibrator.round_target

        def recording_fit(head, labels):
            self.fitted_on.append(labels.clone())
            return fit(head, labels)

        def recording_target(calibrator, *args, **kwargs):
            out = round_target(calibrator, *args, **kwargs)
            self.mixed_in.append(out[0].clone())
            return out

        monkeypatch.setattr(LeastSquaresHead, "fit", recording_fit)
        monkeypatch.setattr(Calibrator, "round_target", recording_target)

    def labels(self, k: int) -> list[torch.Tensor]:
        """Each view's labels after ``k`` rounds (seen when round ``k + 1`` fits on them)."""
        return self.fitted_on[k * self.n_views:(k + 1) * self.n_views]

    def target(self, k: int) -> list[torch.Tensor]:
        """Each view's posterior of round ``k + 1``."""
        return self.mixed_in[k * self.n_views:(k + 1) * self.n_views]


def rounds_only(**changes) -> PurifyConfig:
    """The least-squares rounds alone: the other candidates do not touch the labels mixed."""
    return PurifyConfig(given_candidate=False, logistic_candidate=False, mlp_candidate=False, **changes)


def eac_only(**changes) -> PurifyConfig:
    """The paper's loop without IPC: the linear head's mixing is all that moves the labels."""
    base = dict(ipc=False, epochs=7, eac_period=3, eac_steps=2, eac_batch_size=128)
    return PurifyConfig.paper(**{**base, **changes})


def mixed_epochs(history: list[dict]) -> list[int]:
    return [rec["epoch"] for rec in history if rec["eac_mixed"]]


# -- the paper's loop -----------------------------------------------------------------------

def test_labels_change_exactly_at_mixing_epochs(inputs, monkeypatch):
    rec = PaperRecorder(monkeypatch)
    out = run_engine(inputs, eac_only(), on_epoch=rec)
    assert len(out.history) == 7
    assert mixed_epochs(out.history) == [3, 6]
    assert [e for e, flag in enumerate(rec.mixed_flags, 1) if flag] == [3, 6]
    assert rec.changed_after([inputs["init_labels"]]) == [3, 6]
    # label accuracy moves only when labels do
    acc = [rec_["label_accuracy"] for rec_ in out.history]
    assert all(acc[e - 1] == acc[e - 2] for e in range(2, 8) if e not in (3, 6))
    # EAC-only labels are mixtures of distributions: still on the simplex
    assert_on_simplex(rec.labels[-1][0])


@pytest.mark.parametrize("epochs,expected", [(40, [20, 40]), (45, [20, 40]), (19, [])])
def test_paper_config_mixes_at_multiples_of_twenty(inputs, monkeypatch, epochs, expected):
    """The official script's guard never fires; here Eq. 11 runs every T=20 epochs."""
    rec = PaperRecorder(monkeypatch)
    config = PurifyConfig.paper(epochs=epochs, eac_steps=1, eac_batch_size=64, batch_size=250)
    out = run_engine(inputs, config, on_epoch=rec)
    assert mixed_epochs(out.history) == expected
    assert sorted(rec.targets) == [e - 1 for e in expected]
    # paper: η = 1, so right after a mix (before the next IPC step) labels are the head's output
    for epoch in expected:
        torch.testing.assert_close(rec.labels[epoch - 1][0], rec.targets[epoch - 1][0])


def test_paper_config_runs_ipc_every_epoch(inputs, monkeypatch):
    """The paper's method is IPC + EAC."""
    config = PurifyConfig.paper(epochs=3, eac_steps=1, eac_batch_size=64, batch_size=250)
    assert config.ipc
    rec = PaperRecorder(monkeypatch)
    out = run_engine(inputs, config, on_epoch=rec)
    assert all(record["ipc_loss"] > 0 for record in out.history)
    assert rec.changed_after([inputs["init_labels"]]) == [1, 2, 3]


def test_eta_zero_leaves_labels_unchanged_by_the_head(inputs, monkeypatch):
    rec = PaperRecorder(monkeypatch)
    out = run_engine(inputs, eac_only(eac_eta=0.0), on_epoch=rec)
    assert mixed_epochs(out.history) == [3, 6]  # it mixes, with weight zero
    assert rec.changed_after([inputs["init_labels"]]) == []


def test_eta_zero_with_ipc_equals_no_eac(inputs):
    common = dict(epochs=7, eac_period=3, batch_size=200)
    with_eac = run_engine(inputs, PurifyConfig.paper(eac_eta=0.0, **common))
    without = run_engine(inputs, PurifyConfig.paper(eac=False, **common))
    assert mixed_epochs(without.history) == []
    assert not torch.equal(without.soft_labels, inputs["init_labels"])  # IPC did move the labels
    assert torch.equal(with_eac.soft_labels, without.soft_labels)


def test_eta_one_sets_labels_to_the_heads_softmax_before_the_next_ipc_step(inputs, monkeypatch):
    rec = PaperRecorder(monkeypatch)
    config = PurifyConfig.paper(epochs=4, eac_period=2, eac_eta=1.0, batch_size=200, eac_steps=2,
                                eac_batch_size=128)
    run_engine(inputs, config, on_epoch=rec)
    assert sorted(rec.targets) == [1, 3]
    for epoch, targets in rec.targets.items():
        assert_on_simplex(targets[0])
        torch.testing.assert_close(rec.labels[epoch][0], targets[0], rtol=0, atol=0)
    # and the IPC step of the next epoch moves them again
    assert not torch.equal(rec.labels[2][0], rec.targets[1][0])


def test_paper_eta_mixes_convexly(inputs, monkeypatch):
    rec = PaperRecorder(monkeypatch)
    run_engine(inputs, eac_only(eac_eta=0.25, epochs=3), on_epoch=rec)
    before, after, target = rec.labels[1][0], rec.labels[2][0], rec.targets[2][0]
    torch.testing.assert_close(after, 0.75 * before + 0.25 * target)


def test_paper_two_views_take_each_others_softmax(inputs, monkeypatch):
    rec = PaperRecorder(monkeypatch)
    view2 = dict(features_view2=torch.tanh(inputs["features"]), val_features_view2=torch.tanh(inputs["val_features"]))
    run_engine({**inputs, **view2}, eac_only(eac_eta=1.0, epochs=3), on_epoch=rec)
    assert len(rec.views) == 2
    first, second = rec.targets[2]
    assert not torch.equal(first, second)
    torch.testing.assert_close(rec.labels[2][0], second)
    torch.testing.assert_close(rec.labels[2][1], first)


# -- the default pipeline's least-squares rounds ----------------------------------------------

def test_every_round_mixes_once_and_is_one_history_record(inputs, monkeypatch):
    rec = RoundRecorder(monkeypatch)
    out = run_engine(inputs, rounds_only(rounds=4))
    assert [r["round"] for r in out.history] == [1, 2, 3, 4]
    assert [c.name for c in out.candidates] == ["round 1", "round 2", "round 3", "round 4"]
    assert len(rec.fitted_on) == len(rec.mixed_in) == 4
    assert torch.equal(rec.labels(0)[0], inputs["init_labels"])  # round 1 fits on the given labels
    for k in range(1, 4):
        assert not torch.equal(rec.labels(k)[0], rec.labels(k - 1)[0])  # each round moved them
        assert_on_simplex(rec.labels(k)[0])
        assert_on_simplex(rec.target(k)[0])


def test_round_eta_zero_leaves_labels_unchanged(inputs, monkeypatch):
    rec = RoundRecorder(monkeypatch)
    out = run_engine(inputs, rounds_only(rounds=3, round_eta=0.0))
    assert len(out.history) == 3  # it mixes, with weight zero
    assert all(torch.equal(labels, inputs["init_labels"]) for labels in rec.fitted_on)
    # every round then fits the same head: the same posterior, the same score
    assert len({r["trusted_nll"] for r in out.history}) == 1


def test_round_eta_one_sets_labels_to_the_posterior(inputs, monkeypatch):
    rec = RoundRecorder(monkeypatch)
    run_engine(inputs, rounds_only(rounds=3, round_eta=1.0))
    for k in range(2):
        torch.testing.assert_close(rec.labels(k + 1)[0], rec.target(k)[0], rtol=0, atol=0)
    assert not torch.equal(rec.target(1)[0], rec.target(0)[0])  # and the next round's posterior moved


def test_round_eta_mixes_convexly(inputs, monkeypatch):
    rec = RoundRecorder(monkeypatch)
    run_engine(inputs, rounds_only(rounds=3, round_eta=0.25))
    before, after, target = rec.labels(1)[0], rec.labels(2)[0], rec.target(1)[0]
    torch.testing.assert_close(after, 0.75 * before + 0.25 * target)


def test_rounds_with_two_views_take_each_others_posterior(inputs, monkeypatch):
    rec = RoundRecorder(monkeypatch, views=2)
    # A second view the least-squares head cannot map onto the first: a column permutation
    # or scaling would give bit-identical fits.
    view2 = dict(features_view2=torch.tanh(inputs["features"]), val_features_view2=torch.tanh(inputs["val_features"]))
    out = run_engine({**inputs, **view2}, rounds_only(rounds=2, round_eta=1.0))
    first, second = rec.target(0)
    assert not torch.equal(first, second)
    torch.testing.assert_close(rec.labels(1)[0], second)
    torch.testing.assert_close(rec.labels(1)[1], first)
    # a round's candidate is the mean of the two views' posteriors
    k = int(out.selected.removeprefix("round ")) - 1
    torch.testing.assert_close(out.soft_labels, (rec.target(k)[0] + rec.target(k)[1]) / 2)


# -- the linear head ------------------------------------------------------------------------

@pytest.mark.parametrize("conf_weight, balance_weight", [(0.0, 0.0), (0.4, 0.0), (0.0, 1.0), (0.4, 2.0)])
def test_head_gradient_matches_autograd(conf_weight, balance_weight):
    """The head's hand-written gradient (used for its thousands of small steps) equals autograd."""
    from dmlp_plugin.engine.eac import EACHead

    gen = torch.Generator().manual_seed(3)
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    head = EACHead(7, 4, prior=prior, conf_weight=conf_weight, balance_weight=balance_weight,
                   generator=gen, dtype=torch.float64)
    x = torch.randn(50, 7, generator=gen, dtype=torch.float64) * 3
    t = torch.randint(0, 4, (50,), generator=gen)
    params = head.params.clone().requires_grad_()
    reference = head.loss(x, t, params)
    reference.backward()
    loss, grad = head.loss_and_grad(x, t)
    torch.testing.assert_close(loss, reference.detach())
    torch.testing.assert_close(grad, params.grad)


def test_head_steps_follow_torch_adam():
    """train_steps is Adam on (weight, bias) with L2 decay, as the official torch.optim.Adam head."""
    from dmlp_plugin.engine.eac import EACHead

    gen = torch.Generator().manual_seed(5)
    head = EACHead(6, 3, prior=torch.full((3,), 1 / 3, dtype=torch.float64), lr=0.05,
                   weight_decay=3e-4, generator=gen, dtype=torch.float64)
    ref = torch.nn.Parameter(head.params.clone())
    opt = torch.optim.Adam([ref], lr=0.05, betas=(0.5, 0.999), weight_decay=3e-4)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    t = torch.randint(0, 3, (40,), generator=gen)
    slices = [(0, 10), (10, 20), (20, 27), (27, 40), (0, 10), (30, 40)]
    head.train_slices(x, t, slices)
    for start, stop in slices:
        opt.zero_grad()
        head.loss(x[start:stop], t[start:stop], ref).backward()
        opt.step()
    torch.testing.assert_close(head.params, ref.detach())


def test_slice_schedule_covers_each_batch_in_order_and_skips_padding():
    from dmlp_plugin.engine.eac import slice_schedule

    # Batches of 7, 7 and 6 real rows in a layout of width 7 (one padding row at 20).
    assert slice_schedule([7, 7, 6], 7, 3) == [(0, 3), (3, 6), (6, 7), (7, 10), (10, 13), (13, 14),
                                               (14, 17), (17, 20)]
    assert slice_schedule([5], 5, 500) == [(0, 5)]


def test_paper_head_steps_through_every_ipc_batch_once_per_epoch(inputs, monkeypatch):
    """As the official script: per epoch, consecutive slices of each IPC batch, every real row once."""
    from dmlp_plugin.engine.eac import EACHead

    seen: list[list[tuple[int, int]]] = []
    train = EACHead.train_slices

    def recording(head, features, targets, slices):
        seen.append(list(slices))
        return train(head, features, targets, slices)

    monkeypatch.setattr(EACHead, "train_slices", recording)
    rec = PaperRecorder(monkeypatch)
    config = PurifyConfig.paper(epochs=2, batch_size=250, eac_batch_size=64, eac_steps=8)
    run_engine(inputs, config, on_epoch=rec)
    batches = rec.views[0].batches
    width = batches.index.shape[1]
    assert len(seen) == 2 and seen[0] == seen[1]
    rows = torch.cat([torch.arange(a, b) for a, b in seen[0]])
    real = torch.nonzero(batches.index.reshape(-1) >= 0).squeeze(1)
    assert torch.equal(rows, real)  # each real row once, in layout order
    assert all(b - a <= 64 and a // width == (b - 1) // width for a, b in seen[0])


def test_head_on_bfloat16_rows_follows_the_float32_head():
    """Rows stored in bfloat16 (``precision="bfloat16"``): products in bfloat16, the
    parameters, loss and gradient float32 and close to the float32 step."""
    from dmlp_plugin.engine.eac import EACHead

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(300, 16, generator=gen)
    t = torch.randint(0, 5, (300,), generator=gen)
    heads = [EACHead(16, 5, prior=torch.full((5,), 0.2), lr=0.01, generator=torch.Generator().manual_seed(1))
             for _ in range(2)]
    loss32, grad32 = heads[0].loss_and_grad(x, t)
    loss16, grad16 = heads[1].loss_and_grad(x.bfloat16(), t)
    assert grad16.dtype == torch.float32 and not torch.equal(grad16, grad32)
    torch.testing.assert_close(loss16, loss32, rtol=1e-2, atol=0)
    torch.testing.assert_close(grad16, grad32, rtol=0, atol=2e-2 * float(grad32.abs().max()))
    slices = slice_schedule_for(300, 50)
    heads[0].train_slices(x, t, slices)
    heads[1].train_slices(x.bfloat16(), t, slices)
    assert heads[1].params.dtype == torch.float32
    agree = (heads[0].logits(x).argmax(1) == heads[1].logits(x).argmax(1)).float().mean()
    assert agree > 0.97


def slice_schedule_for(n: int, rows: int) -> list[tuple[int, int]]:
    from dmlp_plugin.engine.eac import slice_schedule

    return slice_schedule([n], n, rows)
