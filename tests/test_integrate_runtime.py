"""What an integrated upstream script gets from ``dmlp_integrations.runtime``.

Fake upstream datasets with each built-in adapter's attributes stand in for the real
upstreams here; ``test_upstream_integrations.py`` runs the real clones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dmlp_integrations import batches, runtime, state
from dmlp_plugin.errors import AlignmentError
from dmlp_plugin.io import array_checksum
from dmlp_plugin.result import PurifyResult

N, C = 6000, 10
TRUSTED = 1500  # rows 0..1499 are the trusted set: enough to measure the given labels' accuracy


@pytest.fixture(autouse=True)
def no_active_run():
    """Each test starts, and leaves, with no --dmlp run active and no budgets."""
    state.set_active(None)
    batches._verified.clear()
    yield
    state.set_active(None)
    batches._verified.clear()
    batches.set_iteration_budget(None)
    batches.set_eval_budget(None)


@pytest.fixture
def truth():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, C, N)
    noisy = np.where(rng.random(N) < 0.5, rng.integers(0, C, N), clean)
    purified = np.where(rng.random(N) < 0.1, rng.integers(0, C, N), clean)
    purified[:TRUSTED] = clean[:TRUSTED]  # trusted rows carry their clean label
    return clean, noisy, purified


def make_result(noisy: np.ndarray, purified: np.ndarray, confidence: float = 0.8) -> PurifyResult:
    soft = np.full((len(purified), C), (1 - confidence) / (C - 1), np.float32)
    soft[np.arange(len(purified)), purified] = confidence
    result = PurifyResult.from_soft_labels(soft, noisy, trusted_indices=np.arange(TRUSTED))
    result.metadata["labels_sha"] = array_checksum(result.given_labels)
    return result


@pytest.fixture
def purified_file(tmp_path, truth):
    _, noisy, purified = truth
    return make_result(noisy, purified).save(tmp_path / "purified.npz")


@contextlib.contextmanager
def stops(capsys, match: str):
    """The block ends the run as an alignment error does: one line naming the problem, status 2."""
    with pytest.raises(SystemExit) as exit_:
        yield
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"\[dmlp-plugin\] error: .*" + match, err), err
    assert "Traceback" not in err


def start(method: str, tmp_path: Path, *argv: str, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Set up a parser as an integrated script does and parse ``argv``."""
    parser = parser or argparse.ArgumentParser(prog="train.py")
    parser.add_argument("--forget_rate", type=float, default=None)
    parser.add_argument("--noise_rate", type=float, default=0.8)
    runtime.setup(parser, method)
    return parser.parse_args([*argv, "--dmlp-record", str(tmp_path / "record.json")])


class CoteachingLike(torch.utils.data.Dataset):
    """Co-teaching's training CIFAR10, as far as the adapter sees it."""

    def __init__(self, clean: np.ndarray, noisy: np.ndarray) -> None:
        self.train_labels = clean.reshape(-1, 1)
        self.train_noisy_labels = [int(y) for y in noisy]
        self.noise_or_not = noisy == clean

    def __getitem__(self, i: int):
        return torch.zeros(2), self.train_noisy_labels[i], i

    def __len__(self) -> int:
        return len(self.train_noisy_labels)


class SplitLike(torch.utils.data.Dataset):
    """ELR+'s CIFAR10_train: a permuted subset with its CIFAR indices in ``indexs``."""

    def __init__(self, labels: np.ndarray, clean: np.ndarray, indexs: np.ndarray) -> None:
        self.indexs = list(indexs)
        self.train_labels = labels[indexs].copy()
        self.train_labels_gt = clean[indexs].copy()

    def __getitem__(self, i: int):
        return torch.zeros(2), int(self.train_labels[i]), i, int(self.train_labels_gt[i])

    def __len__(self) -> int:
        return len(self.train_labels)


# -- without --dmlp -----------------------------------------------------------------------------


def test_without_dmlp_every_call_returns_its_input(tmp_path, truth):
    clean, noisy, _ = truth
    args = start("coteaching", tmp_path)
    assert args.dmlp is None and runtime.active() is None
    labels = list(noisy)
    assert runtime.inject("coteaching", labels) is labels
    dataset = CoteachingLike(clean, noisy)
    assert runtime.inject("coteaching", dataset) is dataset
    assert dataset.train_noisy_labels == list(noisy)
    runtime.watch("cdr", dataset)
    assert args.forget_rate is None and not (tmp_path / "record.json").exists()


def test_setup_adds_the_options_to_help(capsys):
    parser = argparse.ArgumentParser(prog="train.py")
    runtime.setup(parser, "cdr")
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--dmlp PURIFIED.npz" in out and "--dmlp-residual-noise" in out and "--dmlp-record" in out


# -- injection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["list", "int32-column", "tensor"])
def test_injected_labels_keep_the_upstream_container(tmp_path, truth, purified_file, container):
    clean, noisy, purified = truth
    start("cdr", tmp_path, "--dmlp", str(purified_file))
    held = {"list": [int(y) for y in noisy], "int32-column": noisy.astype(np.int32).reshape(-1, 1),
            "tensor": torch.as_tensor(noisy)}[container]
    out = runtime.inject("cdr", held, part="all", clean=clean)
    assert type(out) is type(held)
    if container == "int32-column":
        assert out.dtype == np.int32 and out.shape == (N, 1)
    np.testing.assert_array_equal(np.asarray(out).reshape(-1), purified)


def test_dataset_injection_updates_every_copy_and_the_record(tmp_path, truth, purified_file):
    clean, noisy, purified = truth
    start("coteaching", tmp_path, "--dmlp", str(purified_file))
    dataset = runtime.inject("coteaching", CoteachingLike(clean, noisy))
    assert dataset.train_noisy_labels == [int(y) for y in purified]
    # Co-teaching's pure-ratio mask now describes the purified labels
    np.testing.assert_array_equal(dataset.noise_or_not, purified == clean)
    record = json.loads((tmp_path / "record.json").read_text())
    (entry,) = record["injections"]
    assert entry["identity"] and entry["positions"] == N and entry["given_match"]
    assert entry["clean_agreement_purified"] == pytest.approx((purified == clean).mean())
    assert entry["clean_agreement_given"] == pytest.approx((noisy == clean).mean())


def residual(truth) -> float:
    clean, _, purified = truth
    return float((purified != clean)[TRUSTED:].mean())


def test_residual_noise_sets_the_forget_rate_unless_given(tmp_path, truth, purified_file):
    args = start("coteaching", tmp_path, "--dmlp", str(purified_file))
    expected = PurifyResult.load(purified_file).estimated_noise_rate()
    assert args.forget_rate == pytest.approx(expected, abs=1e-4)
    assert args.forget_rate == pytest.approx(residual(truth), abs=0.04)
    state.set_active(None)
    args = start("coteaching", tmp_path, "--dmlp", str(purified_file), "--forget_rate", "0.5")
    assert args.forget_rate == 0.5
    state.set_active(None)
    args = start("coteaching", tmp_path, "--dmlp", str(purified_file), "--dmlp-residual-noise", "keep")
    assert args.forget_rate is None


def test_cdr_noise_rate_follows_the_residual_noise_or_a_given_rate(tmp_path, truth, purified_file):
    args = start("cdr", tmp_path, "--dmlp", str(purified_file), "--noise_rate", "0.8")
    assert args.noise_rate == pytest.approx(residual(truth), abs=0.04)
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["options_changed"]["noise_rate"][0] == 0.8
    state.set_active(None)
    args = start("cdr", tmp_path, "--dmlp", str(purified_file), "--dmlp-residual-noise", "0")
    assert args.noise_rate == 0.01  # CDR fails at 0


def test_bad_residual_noise_value_exits_with_a_message(tmp_path, purified_file, capsys):
    with pytest.raises(SystemExit) as exit_:
        start("cdr", tmp_path, "--dmlp", str(purified_file), "--dmlp-residual-noise", "lots")
    assert exit_.value.code == 2
    assert "--dmlp: --dmlp-residual-noise must be auto, keep or a rate" in capsys.readouterr().err


def test_missing_or_altered_file_exits_before_training(tmp_path, truth, capsys):
    with pytest.raises(SystemExit):
        start("cdr", tmp_path, "--dmlp", str(tmp_path / "nope.npz"))
    assert "purified-label file not found" in capsys.readouterr().err
    _, noisy, purified = truth
    result = make_result(noisy, purified)
    result.metadata["labels_sha"] = "0" * 16
    result.save(tmp_path / "altered.npz")
    with pytest.raises(SystemExit):
        start("cdr", tmp_path, "--dmlp", str(tmp_path / "altered.npz"))
    assert "the file was altered" in capsys.readouterr().err


def test_labels_from_another_noise_file_stop_dividemix(tmp_path, truth, purified_file, capsys):
    clean, noisy, _ = truth
    start("dividemix", tmp_path, "--dmlp", str(purified_file))
    other = noisy.copy()
    other[:7] = (other[:7] + 1) % C
    with stops(capsys, f"differ from the labels that were purified at 7 of {N}"):
        runtime.inject("dividemix", list(other), clean=clean)


def test_upstreams_that_draw_their_own_noise_are_told_and_relabelled(tmp_path, truth, purified_file, capsys):
    clean, noisy, purified = truth
    start("coteaching", tmp_path, "--dmlp", str(purified_file))
    own = np.where(np.random.default_rng(1).random(N) < 0.5, (clean + 1) % C, clean)
    dataset = runtime.inject("coteaching", CoteachingLike(clean, own))
    assert dataset.train_noisy_labels == [int(y) for y in purified]
    assert "coteaching drew its own noisy labels" in capsys.readouterr().err


def test_labels_in_another_sample_order_are_refused(tmp_path, truth, capsys):
    clean, noisy, purified = truth
    perm = np.random.default_rng(2).permutation(N)
    make_result(noisy[perm], purified[perm]).save(tmp_path / "shuffled.npz")
    start("cdr", tmp_path, "--dmlp", str(tmp_path / "shuffled.npz"))
    with stops(capsys, "look unrelated to cdr's images"):
        runtime.inject("cdr", noisy[perm], part="all", clean=clean)


def test_class_and_sample_counts_are_checked(tmp_path, truth, purified_file, capsys):
    clean, noisy, _ = truth
    start("cdr", tmp_path, "--dmlp", str(purified_file))
    with stops(capsys, "go up to class 99, but the purified labels have 10 classes"):
        runtime.inject("cdr", np.r_[noisy[:-1], 99], part="all")
    with stops(capsys, "span 5 classes, the purified labels 10"):
        runtime.inject("cdr", noisy % 5, part="all", clean=clean % 5)
    with stops(capsys, f"{N - 1} all labels but its index map has {N} positions"):
        runtime.inject("cdr", noisy[:-1], part="all")


def test_a_split_is_mapped_through_its_indices_and_recorded(tmp_path, truth, purified_file):
    clean, noisy, purified = truth
    start("elr_plus", tmp_path, "--dmlp", str(purified_file))
    perm = np.random.default_rng(3).permutation(N)
    train_idx, val_idx = perm[:1800], perm[1800:]
    own = (noisy + 3) % C  # ELR+ draws its own noise
    train = runtime.inject("elr_plus", SplitLike(own, clean, train_idx), part="train")
    val = runtime.inject("elr_plus", SplitLike(own, clean, val_idx), part="val", indices=val_idx)
    np.testing.assert_array_equal(train.train_labels, purified[train_idx])
    np.testing.assert_array_equal(val.train_labels, purified[val_idx])
    record = json.loads((tmp_path / "record.json").read_text())
    saved = {e["part"]: np.load(e["indices_file"]) for e in record["injections"]}
    np.testing.assert_array_equal(saved["train"], train_idx)
    np.testing.assert_array_equal(saved["val"], val_idx)


# -- loaders ------------------------------------------------------------------------------------


def test_loader_batches_are_checked_and_sampled_into_the_record(tmp_path, truth, purified_file):
    clean, noisy, purified = truth
    start("elr_plus", tmp_path, "--dmlp", str(purified_file))
    idx = np.random.default_rng(4).permutation(N)[:1500]
    dataset = runtime.inject("elr_plus", SplitLike(noisy, clean, idx), part="train")
    for _ in DataLoader(dataset, batch_size=50, shuffle=True):
        pass
    record = json.loads((tmp_path / "record.json").read_text())
    (check,) = record["loader_checks"]
    assert check["batches_checked"] == runtime.CHECKED_BATCHES and check["samples_checked"] == 100
    pairs = np.array(check["samples"])
    assert len(pairs) == runtime.RECORDED_SAMPLES
    np.testing.assert_array_equal(pairs[:, 1], purified[pairs[:, 0]])  # dataset index -> purified label


def test_a_loader_yielding_other_labels_is_stopped(tmp_path, truth, purified_file, capsys):
    clean, noisy, purified = truth
    start("coteaching", tmp_path, "--dmlp", str(purified_file))
    dataset = runtime.inject("coteaching", CoteachingLike(clean, noisy))
    dataset.train_noisy_labels = [(y + 1) % C for y in dataset.train_noisy_labels]  # lost on the way
    with stops(capsys, "coteaching train dataset yields 32 of 32 sampled items"):
        next(iter(DataLoader(dataset, batch_size=16, shuffle=True)))


def test_training_without_any_injection_is_refused(tmp_path, truth, purified_file, capsys):
    clean, noisy, _ = truth
    start("coteaching", tmp_path, "--dmlp", str(purified_file))
    with stops(capsys, "before any label was injected"):
        next(iter(DataLoader(CoteachingLike(clean, noisy), batch_size=16, shuffle=True)))


def test_iteration_budget_stops_training_but_not_evaluation(truth):
    clean, noisy, _ = truth
    dataset = CoteachingLike(clean, noisy)
    batches.set_iteration_budget(3)
    batches.set_eval_budget(2)
    assert len(list(DataLoader(dataset, batch_size=100, shuffle=False))) == 2
    drawn = 0
    with pytest.raises(batches.BudgetReached) as stop:
        for _ in DataLoader(dataset, batch_size=100, shuffle=True):
            drawn += 1
    assert drawn == 3 and stop.value.code == 0
