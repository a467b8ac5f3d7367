"""`purify_dataset` end to end on planted Gaussian clusters with known symmetric noise."""

from __future__ import annotations

import numpy as np
import pytest

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.io import array_checksum
from engine_fixtures import Planted, assert_on_simplex, one_torch_thread, planted_clusters  # noqa: F401

# A run of the default config takes a few hundredths of a second at N=3000; the paper's
# Adam head is the slow part, so its runs use fewer steps per epoch.
FAST_PAPER = dict(epochs=40, eac_steps=3)


@pytest.fixture(scope="module")
def data() -> Planted:
    return planted_clusters()  # N=3000, C=5, d=24, 50% DivideMix noise, 200 trusted


@pytest.fixture(scope="module")
def result(data):
    return purify_dataset(data.features, data.given, **data.purify_kwargs(), clean_labels=data.clean,
                          config=PurifyConfig(rounds=4), seed=3)


def given_accuracy(data: Planted) -> float:
    return float((data.given == data.clean).mean())


# -- accuracy --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("rate", [0.4, 0.5, 0.6])
def test_default_config_purifies_close_to_the_clean_label_reference(rate, seed):
    """Reference: a linear classifier fitted to the *clean* labels (~86-87% here, the same
    as the Bayes classifier of the features, the nearest true mean). The given labels are
    only ~60% right at rate 0.5 (DivideMix: half relabelled uniformly over 5 classes, 40%
    wrong). The trusted set plus the features' cluster structure carry enough information
    to get back to the reference, and the given labels, still better than chance, can push
    the posterior slightly above it; so we ask for at least reference − 3 points, which is
    also a gain of ≥ 15 points over the given labels at 50% noise and more at 60%."""
    data = planted_clusters(rate=rate, seed=seed)
    reference, before = data.clean_linear_accuracy(), given_accuracy(data)
    assert 0.83 < reference < 0.92 and abs(reference - data.bayes_accuracy()) < 0.02  # the regime meant
    result = purify_dataset(data.features, data.given, **data.purify_kwargs(), seed=seed)
    after = result.accuracy(data.clean, exclude_trusted=True)
    assert after >= reference - 0.03, (after, reference)
    if rate >= 0.5:
        assert after >= before + 0.15, (after, before)


def test_paper_config_gives_a_valid_result_not_worse_than_the_given_labels(data):
    config = PurifyConfig.paper(**FAST_PAPER)
    result = purify_dataset(data.features, data.given, **data.purify_kwargs(), config=config)
    assert result.config == config
    assert [r["epoch"] for r in result.history if r["eac_mixed"]] == [20, 40]
    # The head's trusted log-loss is measured where it mixes, and only there.
    assert all(("trusted_nll" in r) == r["eac_mixed"] for r in result.history)
    assert "candidates" not in result.metadata  # the paper's loop selects nothing
    assert_on_simplex(result.soft_labels)
    # With few Adam steps per epoch the paper's head is far from converged (~75%); it must
    # still not damage the labels.
    assert result.accuracy(data.clean) >= given_accuracy(data) - 0.02


def test_two_view_mode_uses_the_second_view(data, result):
    view2 = data.features + np.random.default_rng(5).normal(scale=0.3, size=data.features.shape).astype(np.float32)
    two = purify_dataset(data.features, data.given, **data.purify_kwargs(), features_view2=view2,
                         config=result.config, seed=3)
    assert two.metadata["two_view"] is True and result.metadata["two_view"] is False
    assert np.abs(two.soft_labels - result.soft_labels).max() > 1e-3
    assert_on_simplex(two.soft_labels)
    assert two.accuracy(data.clean) >= data.clean_linear_accuracy() - 0.03


def test_separate_trusted_set_protocol(data):
    """Clothing1M protocol: a trusted set outside the training set, no given labels for it."""
    train = np.setdiff1d(np.arange(len(data.clean)), data.trusted)
    result = purify_dataset(data.features[train], data.given[train], val_features=data.features[data.trusted],
                            val_labels=data.clean[data.trusted])
    assert len(result) == len(train) and result.soft_labels.shape == (len(train), data.num_classes)
    assert len(result.trusted_indices) == 0
    assert result.metadata["trusted_protocol"] == "separate"
    assert result.metadata["num_trusted"] == len(data.trusted)
    assert_on_simplex(result.soft_labels)
    assert np.array_equal(result.given_labels, data.given[train])
    after = float((result.labels == data.clean[train]).mean())
    assert after >= data.clean_linear_accuracy() - 0.03
    assert after >= float((data.given[train] == data.clean[train]).mean()) + 0.15


# -- result properties -----------------------------------------------------------------------

def test_soft_labels_are_on_the_simplex_and_hard_labels_their_argmax(result):
    assert result.soft_labels.dtype == np.float32
    assert_on_simplex(result.soft_labels)
    assert np.array_equal(result.labels, result.soft_labels.argmax(1))
    assert np.allclose(result.confidence, result.soft_labels.max(1))


def test_trusted_samples_carry_their_clean_labels_one_hot(data, result):
    trusted = data.trusted
    assert np.array_equal(np.sort(result.trusted_indices), trusted)
    onehot = np.eye(data.num_classes, dtype=np.float32)[data.clean[trusted]]
    assert np.array_equal(result.soft_labels[trusted], onehot)
    assert np.array_equal(result.labels[trusted], data.clean[trusted])
    assert np.array_equal(result.given_labels, data.given)  # trusted rows keep their given label here
    # some trusted samples had noisy given labels: they are "changed" to the clean one
    noisy_trusted = trusted[data.given[trusted] != data.clean[trusted]]
    assert len(noisy_trusted) > 0 and result.changed[noisy_trusted].all()


def test_changed_quality_and_label_issue_ranking(data, result):
    assert np.array_equal(result.changed, result.labels != data.given)
    assert result.num_changed == int(result.changed.sum()) > 0
    n = len(data.given)
    assert np.allclose(result.label_quality, result.soft_labels[np.arange(n), data.given])
    issues = result.label_issues
    assert np.array_equal(np.sort(issues), np.flatnonzero(result.changed))
    assert np.all(np.diff(result.label_quality[issues]) >= 0)
    # the ranking is informative: the top of the list is mostly real label errors
    top = issues[: len(issues) // 4]
    assert (data.given[top] != data.clean[top]).mean() > 0.9


def test_history_has_one_record_per_round(result):
    """The default's history: one record per least-squares round, the round's candidate as
    the selection saw it (``metadata["candidates"]`` holds every candidate)."""
    history = result.history
    assert [r["round"] for r in history] == [1, 2, 3, 4]
    assert all(set(r) == {"round", "trusted_nll", "changed", "label_accuracy"} for r in history)
    assert all(0 <= r["label_accuracy"] <= 1 and 0 <= r["changed"] <= 1 and r["trusted_nll"] > 0 for r in history)
    rounds = [c for c in result.metadata["candidates"] if c["family"] == "least-squares rounds"]
    assert [c["name"] for c in rounds] == [f"round {r['round']}" for r in history]
    for record, candidate in zip(history, rounds):
        assert (record["trusted_nll"], record["changed"], record["label_accuracy"]) == (
            candidate["trusted_nll"], candidate["changed"], candidate["label_accuracy"])
    # the fraction changed, which the progress shows without clean labels: the first round
    # already moves labels (its posterior), and the rounds' labels are near the final ones
    changed = (result.labels != result.given_labels)[np.setdiff1d(np.arange(len(result)), result.trusted_indices)]
    assert history[0]["changed"] > 0
    assert history[-1]["changed"] == pytest.approx(changed.mean(), abs=0.04)


def test_metadata_ties_the_result_to_its_inputs(data, result):
    meta = result.metadata
    assert meta["features_sha"] == array_checksum(data.features.astype(np.float32))
    assert meta["labels_sha"] == array_checksum(data.given.astype(np.int64))
    assert meta["val_labels_sha"] == array_checksum(data.clean[data.trusted].astype(np.int64))
    assert (meta["num_samples"], meta["feature_dim"], meta["num_trusted"]) == (3000, 24, 200)
    assert (meta["trusted_protocol"], meta["seed"], meta["device"]) == ("indices", 3, "cpu")
    transition = np.asarray(meta["transition"])
    assert transition.shape == (5, 5) and np.allclose(transition.sum(1), 1, atol=1e-5)
    # Measured on the purified rows: the trusted ones carry their clean labels.
    rest = np.setdiff1d(np.arange(3000), data.trusted)
    assert meta["label_accuracy_before"] == pytest.approx(float((data.given[rest] == data.clean[rest]).mean()))
    assert meta["label_accuracy_after"] == pytest.approx(result.accuracy(data.clean, exclude_trusted=True))
    assert meta["label_accuracy_after"] < result.accuracy(data.clean)
    other = data.features.copy()
    other[17, 3] += 1.0
    assert array_checksum(other) != meta["features_sha"]


# The network candidate is left out: its folds and batches follow the rows' order, so a
# permutation trains other networks (test_engine_mlp checks what holds for it).
@pytest.mark.parametrize("config", [PurifyConfig(rounds=2, logistic_candidate=False, mlp_candidate=False),
                                    PurifyConfig.paper(eac=False, epochs=10, batch_size=5000)],
                         ids=["rounds", "paper-ipc-one-batch"])
def test_permuting_the_samples_permutes_the_result(data, config):
    perm = np.random.default_rng(9).permutation(len(data.clean))
    inverse = np.argsort(perm)
    base = purify_dataset(data.features, data.given, **data.purify_kwargs(), config=config)
    shuffled = purify_dataset(data.features[perm], data.given[perm], val_indices=inverse[data.trusted],
                              val_labels=data.clean[data.trusted], config=config)
    # equal up to float summation order (same trusted order, so the same folds)
    np.testing.assert_allclose(shuffled.soft_labels[inverse], base.soft_labels, atol=1e-5)
    assert np.array_equal(shuffled.labels[inverse], base.labels)
    assert np.array_equal(np.sort(perm[shuffled.label_issues]), np.sort(base.label_issues))


def test_permuting_the_samples_barely_moves_the_logistic_candidate(data):
    # L-BFGS stopped after a fixed number of iterations follows a path that float
    # summation order can nudge, so only near-equality holds here.
    config = PurifyConfig(rounds=2, mlp_candidate=False)
    perm = np.random.default_rng(9).permutation(len(data.clean))
    inverse = np.argsort(perm)
    base = purify_dataset(data.features, data.given, **data.purify_kwargs(), config=config)
    shuffled = purify_dataset(data.features[perm], data.given[perm], val_indices=inverse[data.trusted],
                              val_labels=data.clean[data.trusted], config=config)
    assert base.metadata["selected"] == shuffled.metadata["selected"]
    assert base.metadata["selected"].startswith("logistic")
    np.testing.assert_allclose(shuffled.soft_labels[inverse], base.soft_labels, atol=0.02)
    assert (shuffled.labels[inverse] == base.labels).mean() > 0.995


def test_paper_mode_in_bfloat16_gives_the_labels_of_float32(data):
    """``precision="bfloat16"`` changes the arithmetic, not the method: the labels agree
    with the float32 run almost everywhere and are as accurate."""
    config = PurifyConfig.paper(**FAST_PAPER)
    kwargs = dict(**data.purify_kwargs(), seed=2)
    full = purify_dataset(data.features, data.given, config=config, **kwargs)
    half = purify_dataset(data.features, data.given, config=config.replace(precision="bfloat16"), **kwargs)
    assert half.config.precision == "bfloat16"
    assert not np.array_equal(full.soft_labels, half.soft_labels)  # bfloat16 really ran
    assert (full.labels == half.labels).mean() > 0.98
    assert abs(full.accuracy(data.clean) - half.accuracy(data.clean)) < 0.01


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_warns_only_where_the_hardware_lacks_it(data, monkeypatch, native):
    import warnings

    from dmlp_plugin import purify

    monkeypatch.setattr(purify, "native_bfloat16", lambda device: native)
    config = PurifyConfig.paper(epochs=2, eac_period=1, precision="bfloat16", batch_size=1000, eac_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        purify_dataset(data.features, data.given, **data.purify_kwargs(), config=config)
    slow = [w for w in caught if "no native bfloat16" in str(w.message)]
    assert len(slow) == (0 if native else 1)


def test_native_bfloat16_reads_the_cpu_flags(monkeypatch):
    import torch

    from dmlp_plugin.device import native_bfloat16

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert native_bfloat16(cpu) is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert native_bfloat16(cpu) is True


# -- determinism, progress, callbacks ---------------------------------------------------------

@pytest.mark.parametrize("config", [
    PurifyConfig(rounds=2),
    PurifyConfig(rounds=2, mlp_candidate=True, mlp_hidden=64, mlp_epochs=4),
    PurifyConfig.paper(epochs=10, eac_period=5, eac_steps=2, batch_size=700, reshuffle_every=3),
    PurifyConfig.paper(epochs=4, eac_period=2, eac_steps=2, batch_size=1000),
    PurifyConfig.paper(epochs=4, eac_period=2, eac_steps=2, batch_size=1000, precision="bfloat16"),
], ids=["default", "default-network", "paper-reshuffled", "paper", "paper-bfloat16"])
def test_same_seed_gives_bitwise_identical_labels(data, config):
    def run(seed):
        return purify_dataset(data.features, data.given, **data.purify_kwargs(), config=config,
                              seed=seed).soft_labels

    first = run(7)
    assert np.array_equal(first, run(7))
    assert first.tobytes() == run(7).tobytes()
    # the seed draws the trusted folds (default) or the batch partition (paper mode), so
    # another seed gives other labels
    assert not np.array_equal(first, run(8))


def test_progress_bar_without_a_terminal(data, capsys):
    config = PurifyConfig(rounds=2)
    plain = purify_dataset(data.features, data.given, **data.purify_kwargs(), config=config)
    shown = purify_dataset(data.features, data.given, **data.purify_kwargs(), config=config, progress=True)
    assert np.array_equal(plain.soft_labels, shown.soft_labels)
    assert shown.history == plain.history
    assert capsys.readouterr().out == ""  # the bar goes to stderr, never to stdout


@pytest.mark.parametrize("progress", [False, True])
@pytest.mark.parametrize("config, key, mixed", [
    (PurifyConfig(rounds=3), "round", None),
    (PurifyConfig.paper(epochs=6, eac_period=4, eac_steps=2, batch_size=1000), "epoch",
     [False, False, False, True, False, False]),
], ids=["default", "paper"])
def test_on_epoch_receives_every_record(data, progress, config, key, mixed):
    seen = []
    result = purify_dataset(data.features, data.given, **data.purify_kwargs(), clean_labels=data.clean,
                            config=config, progress=progress,
                            on_epoch=lambda epoch, record: seen.append((epoch, dict(record))))
    steps = len(mixed) if mixed else config.rounds
    assert [epoch for epoch, _ in seen] == list(range(1, steps + 1))
    assert [record for _, record in seen] == result.history
    assert [record[key] for _, record in seen] == list(range(1, steps + 1))
    if mixed is not None:
        assert [record["eac_mixed"] for _, record in seen] == mixed
    assert all("label_accuracy" in record for _, record in seen)
