"""Purification under a memory budget: features read in chunks give the in-memory labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.cli import main as cli_main
from dmlp_plugin.engine import rows as R
from dmlp_plugin.engine.logistic_head import loss_and_grad
from dmlp_plugin.errors import ConfigError, InputError
from dmlp_plugin.sizes import parse_memory
from dmlp_plugin.streaming import plan_memory
from dmlp_plugin.validation import purify_inputs

from streaming_fixtures import assert_agree, planted


#: What a run in chunks computes: the network candidate (off by default) needs rows at
#: random and is left out there, so the labels in chunks are the in-memory labels of the
#: other candidates.
IN_MEMORY = PurifyConfig(mlp_candidate=False)
#: The network asked for, as small as it comes: these tests ask only whether it runs.
NETWORK = PurifyConfig(mlp_candidate=True, mlp_layers=1, mlp_hidden=32, mlp_epochs=2, mlp_repeats=1)


def _budget_for_chunks(x, trusted, c=10, config=PurifyConfig()):
    """A budget half of what the run takes whole: forces several chunks."""
    whole = plan_memory(len(x) - len(trusted), x.shape[1], c, config, source_dtype=x.dtype)
    return whole.in_memory_bytes // 2


# -- the chunked operations ------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [None, "subset"])
def test_chunked_products_equal_the_whole_ones(rows):
    rng = np.random.default_rng(1)
    source = rng.normal(size=(53, 6)).astype(np.float16)
    index = np.sort(rng.choice(53, 40, replace=False)) if rows else None
    chunked = R.FeatureRows(source, rows=index, chunk_rows=7)
    dense = torch.from_numpy(source[index] if rows else source).float()
    assert chunked.streamed and len(chunked.bounds()) == -(-len(dense) // 7)
    whole = R.FeatureRows(dense)
    y = torch.from_numpy(rng.normal(size=(4, len(dense))).astype(np.float32))
    w, b = torch.randn(6, 3), torch.randn(3)
    assert torch.allclose(R.gram(chunked), R.gram(whole), atol=1e-4)
    assert torch.allclose(R.xty_rows(chunked, y), R.xty_rows(whole, y), atol=1e-4)
    assert torch.allclose(R.scores(chunked, w, b), dense @ w + b, atol=1e-5)
    assert torch.allclose(R.scores_rows(chunked, w.T, b[:, None]), (dense @ w + b).T, atol=1e-5)
    assert torch.allclose(R.column_mean(chunked), dense.mean(0), atol=1e-6)
    assert torch.allclose(R.mean_square(chunked).float(), dense.square().mean(), atol=1e-6)
    assert torch.equal(chunked.whole(), dense)


def test_the_logistic_objective_in_chunks_equals_the_whole_one():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(90, 5)).astype(np.float32))
    given = torch.from_numpy(rng.integers(0, 3, 90))
    transition = torch.full((3, 3), 0.1) + 0.7 * torch.eye(3)
    t_given = transition.T[given]
    xt, yt = torch.randn(12, 5), torch.nn.functional.one_hot(torch.arange(12) % 3, 3).float()
    params = torch.randn(4, 6, 3) * 0.3
    weights = torch.rand(4, 12)
    kw = dict(weight_decay=torch.tensor([0.0, 1e-3, 1e-2, 0.1]), shift=x.mean(0), scale=1.3, per_head=True)
    loss_w, grad_w = loss_and_grad(params, x, t_given, xt, yt, weights, **kw)
    loss_c, grad_c = loss_and_grad(params, R.FeatureRows(x.numpy(), chunk_rows=16), t_given, xt, yt, weights, **kw)
    assert torch.allclose(loss_w, loss_c, atol=1e-5)
    assert torch.allclose(grad_w, grad_c, atol=1e-5)


# -- purify_dataset under max_memory ---------------------------------------------------------------


def test_a_budget_that_forces_chunks_gives_the_in_memory_labels():
    x, clean, noisy, trusted = planted()
    kw = dict(val_indices=trusted, val_labels=clean[trusted], seed=0)
    whole = purify_dataset(x, noisy, config=IN_MEMORY, **kw)
    with pytest.warns(RuntimeWarning, match="network candidate was left out"):  # asked for, it cannot run
        chunked = purify_dataset(x, noisy, config=NETWORK.replace(max_memory=_budget_for_chunks(x, trusted)), **kw)
    assert "mlp + logistic" not in chunked.metadata["candidate_nll"]
    in_memory = purify_dataset(x, noisy, config=NETWORK, **kw)
    assert "mlp + logistic" in in_memory.metadata["candidate_nll"]  # in memory it runs
    memory = chunked.metadata["memory"]
    assert memory["streamed"] and memory["chunk_rows"] < len(x) // 2
    assert not whole.metadata["memory"]["streamed"]
    # The task is not trivial (so agreement means something) and purification helps.
    rest = np.setdiff1d(np.arange(len(x)), trusted)
    assert (noisy[rest] == clean[rest]).mean() + 0.1 < whole.accuracy(clean) < 0.99
    assert whole.metadata["selected"] == chunked.metadata["selected"]
    assert_agree(chunked, whole)


def test_a_float16_memmap_stays_on_disk_and_purifies_like_the_array(tmp_path):
    x, clean, noisy, trusted = planted(seed=3)
    path = tmp_path / "feats.npy"
    np.save(path, x.astype(np.float16))
    mapped = np.load(path, mmap_mode="r")
    inputs = purify_inputs(mapped, noisy, val_labels=clean[trusted], val_indices=trusted)
    assert np.shares_memory(inputs.features, mapped) and inputs.features.dtype == np.float16  # no copy
    assert inputs.val_features.dtype == np.float32
    kw = dict(val_indices=trusted, val_labels=clean[trusted], seed=0)
    in_memory = purify_dataset(x.astype(np.float16).astype(np.float32), noisy, config=IN_MEMORY, **kw)
    budget = _budget_for_chunks(mapped, trusted)
    chunked = purify_dataset(str(path), noisy, config=PurifyConfig(max_memory=budget), **kw)
    assert chunked.metadata["memory"]["streamed"]
    assert_agree(chunked, in_memory)


def test_a_separate_trusted_set_and_two_views_stream_too():
    x, clean, noisy, trusted = planted(seed=4)
    rest = np.setdiff1d(np.arange(len(x)), trusted)
    view2 = x + np.random.default_rng(5).normal(size=x.shape).astype(np.float32) * 0.1
    kw = dict(val_features=x[trusted], val_labels=clean[trusted], features_view2=view2[rest],
              val_features_view2=view2[trusted], seed=0)
    whole = purify_dataset(x[rest], noisy[rest], config=IN_MEMORY, **kw)
    plan = plan_memory(len(rest), x.shape[1], 10, PurifyConfig(), views=2)
    chunked = purify_dataset(x[rest], noisy[rest], config=PurifyConfig(max_memory=plan.in_memory_bytes // 3), **kw)
    assert chunked.metadata["memory"]["streamed"]
    assert_agree(chunked, whole)


def test_a_budget_that_fits_changes_nothing():
    x, clean, noisy, trusted = planted(n=2000, seed=6)
    kw = dict(val_indices=trusted, val_labels=clean[trusted], seed=0)
    a = purify_dataset(x, noisy, config=NETWORK, **kw)
    b = purify_dataset(x, noisy, config=NETWORK.replace(max_memory="4GB"), **kw)
    assert not b.metadata["memory"]["streamed"] and "mlp" in b.metadata["candidate_nll"]
    np.testing.assert_array_equal(a.soft_labels, b.soft_labels)


@pytest.mark.parametrize("budget, spilled", [(4_500_000, False), (3_500_000, True)])
def test_paper_mode_in_groups_of_batches_gives_the_in_memory_labels(budget, spilled, tmp_path, monkeypatch):
    """IPC a group of batches at a time, the solvers in RAM or in a temporary file: each
    batch's step is the batched one, so the labels are the in-memory run's."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where the solvers spill
    x, clean, noisy, trusted = planted(n=3000, seed=2)
    kw = dict(val_indices=trusted, val_labels=clean[trusted], seed=0)
    config = PurifyConfig.paper(epochs=30, batch_size=500)
    whole = purify_dataset(x, noisy, config=config, **kw)
    grouped = purify_dataset(x, noisy, config=config.replace(max_memory=budget), **kw)
    memory = grouped.metadata["memory"]
    assert memory["streamed"] and memory["spilled"] == spilled
    assert 500 <= memory["chunk_rows"] < 1500  # one or two of the six batches at a time
    assert whole.accuracy(clean) > (noisy == clean).mean() + 0.1  # paper mode did something
    np.testing.assert_array_equal(grouped.labels, whole.labels)
    np.testing.assert_allclose(grouped.soft_labels, whole.soft_labels, atol=1e-5)
    assert not list(tmp_path.glob("dmlp-ipc-solvers-*"))  # the spill file is gone


def test_a_budget_below_the_state_and_one_chunk_is_refused_before_any_work():
    x, clean, noisy, trusted = planted(n=3000, seed=7)
    kw = dict(val_indices=trusted, val_labels=clean[trusted])
    with pytest.raises(InputError, match=r"cannot hold a purification of 2,700 rows.*at least [0-9.]+ MB"):
        purify_dataset(x, noisy, config=PurifyConfig(max_memory="1MB"), **kw)
    # paper mode needs one IPC batch at a time at least
    with pytest.raises(InputError, match=r"cannot hold a purification of 2,700 rows.*at least 3.[0-9] MB"):
        purify_dataset(x, noisy, config=PurifyConfig.paper(max_memory="3MB", batch_size=500), **kw)


@pytest.mark.parametrize("text, size", [("8GB", 8 * 10 ** 9), ("512MiB", 512 * 2 ** 20), (" 1.5 gb", 1_500_000_000),
                                        (4096, 4096)])
def test_sizes_are_read_as_users_write_them(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("bad", ["lots", "-1GB", "0", True, "8 parsecs"])
def test_a_bad_size_is_a_config_error_naming_the_field(bad):
    with pytest.raises(ConfigError, match="max_memory"):
        PurifyConfig(max_memory=bad)


def test_nan_rows_are_found_block_by_block_in_a_float16_memmap(tmp_path):
    from dmlp_plugin.validation import _nonfinite_rows

    x = np.zeros((1000, 8), np.float16)
    x[777, 3] = np.nan
    x[901, 0] = np.inf
    np.save(tmp_path / "f.npy", x)
    mapped = np.load(tmp_path / "f.npy", mmap_mode="r")
    np.testing.assert_array_equal(_nonfinite_rows(mapped, block_bytes=160), [777, 901])  # 10 rows a block
    with pytest.raises(InputError, match="2 row.*first: row 777 has NaN"):
        purify_dataset(mapped, np.zeros(1000, int), val_indices=np.arange(10), val_labels=np.zeros(10, int))


def test_the_cli_reads_max_memory_and_says_it_read_in_chunks(tmp_path, capsys):
    x, clean, noisy, trusted = planted(seed=8)
    for name, arr in (("x", x.astype(np.float16)), ("y", noisy), ("v", trusted), ("vl", clean[trusted])):
        np.save(tmp_path / f"{name}.npy", arr)
    budget = _budget_for_chunks(np.load(tmp_path / "x.npy", mmap_mode="r"), trusted)
    args = ["purify", "--features", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
            "--val-indices", str(tmp_path / "v.npy"), "--val-labels", str(tmp_path / "vl.npy"),
            "-o", str(tmp_path / "out.npz"), "--no-progress", "--device", "cpu"]
    assert cli_main(args + ["--max-memory", f"{budget}B"]) == 0
    out = capsys.readouterr().out
    assert "features read" in out and "in chunks of" in out
    assert cli_main(args + ["--max-memory", "lots"]) == 2
    err = capsys.readouterr().err
    assert "--max-memory must be a size" in err and "Traceback" not in err


def test_a_folder_of_torchrun_shards_is_merged_once_and_purifies_like_the_file(tmp_path):
    from dmlp_plugin import distributed as dist

    x, clean, noisy, trusted = planted(n=2000, seed=9)
    folder = tmp_path / "shards"
    folder.mkdir()
    for rank in range(3):  # dealt round-robin, as under torchrun
        rows = dist.shard_indices(len(x), rank, 3)
        dist.write_shard(folder, rank, rows, {"features": x[rows].astype(np.float16)})
    kw = dict(val_indices=trusted, val_labels=clean[trusted], seed=0, config=PurifyConfig())
    from_folder = purify_dataset(str(folder), noisy, **kw)
    merged = folder / "merged.features.npy"
    assert merged.is_file()
    np.testing.assert_array_equal(np.load(merged), x.astype(np.float16))
    np.testing.assert_array_equal(from_folder.labels, purify_dataset(x.astype(np.float16), noisy, **kw).labels)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="path is a folder, expected a file"):
        purify_dataset(str(tmp_path / "empty"), noisy, **kw)


def test_max_memory_is_left_out_of_a_default_configs_dict_and_round_trips_when_set():
    # A resource, not a hyperparameter: configs (and the stored-result ids hashed from them)
    # read as before it existed, unless a budget is set.
    assert "max_memory" not in PurifyConfig().to_dict()
    assert PurifyConfig.from_dict(PurifyConfig().to_dict()) == PurifyConfig()
    assert PurifyConfig.from_dict(PurifyConfig(max_memory="2GB").to_dict()).max_memory == "2GB"
