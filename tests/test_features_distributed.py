"""Feature extraction under torchrun: sharding, the merge by files, and the shared
``dataset_features`` entry point, on CPU with gloo and two processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dmlp_plugin import distributed as dist
from dmlp_plugin.data import ArrayDataset
from dmlp_plugin.errors import CorruptFileError, InputError, MissingFileError
from dmlp_plugin.features import dataset_features, extract_features
from dmlp_plugin.features.cache import FeatureCache

TINY = "timm:test_resnet-cifar"
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    """Tests start outside any torchrun run, whatever the environment they inherit."""
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)


def tiny_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU())


def arrays_dataset(n: int) -> ArrayDataset:
    rng = np.random.default_rng(1)
    return ArrayDataset(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), np.arange(n) % 3)


# -- sharding and merging, in one process ---------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 5, 13, 16])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_shards_cover_every_index_once_without_padding(n, world):
    shards = [dist.shard_indices(n, r, world) for r in range(world)]
    merged = np.sort(np.concatenate(shards))
    np.testing.assert_array_equal(merged, np.arange(n))  # no padding duplicates, nothing lost
    for r, rows in enumerate(shards):
        # DistributedSampler's round-robin deal, minus the padded tail
        np.testing.assert_array_equal(rows, np.arange(r, n, world))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_merge_puts_rows_in_index_order_in_small_blocks(tmp_path):
    n, world = 11, 3
    rng = np.random.default_rng(0)
    full = rng.normal(size=(n, 4)).astype(np.float32)
    for r in reversed(range(world)):  # shards land in any order
        rows = dist.shard_indices(n, r, world)
        dist.write_shard(tmp_path, r, rows, {"features": full[rows], "ids": rows * 10})
    paths = dist.merge_shards(tmp_path, world, n, ["features", "ids"], block_rows=2)
    merged = np.load(paths["features"])
    assert merged.dtype == np.float32
    np.testing.assert_array_equal(merged, full)
    np.testing.assert_array_equal(np.load(paths["ids"]), np.arange(n) * 10)
    target = tmp_path / "out" / "f.npy"
    paths = dist.merge_shards(tmp_path, world, n, ["features"], targets={"features": target})
    assert paths["features"] == target
    np.testing.assert_array_equal(np.load(target), full)


def test_merge_skips_an_empty_shard(tmp_path):
    # one image, two ranks: rank 1's shard is empty, and has no width to agree on
    dist.write_shard(tmp_path, 0, dist.shard_indices(1, 0, 2), {"features": np.ones((1, 3), np.float32)})
    dist.write_shard(tmp_path, 1, dist.shard_indices(1, 1, 2), {"features": np.empty((0, 0), np.float32)})
    merged = np.load(dist.merge_shards(tmp_path, 2, 1, ["features"])["features"])
    np.testing.assert_array_equal(merged, np.ones((1, 3)))


def test_merge_refuses_missing_or_overlapping_shards(tmp_path):
    full = np.zeros((6, 2), np.float32)
    dist.write_shard(tmp_path, 0, np.array([0, 2, 4]), {"features": full[:3]})
    with pytest.raises(MissingFileError, match="shard of rank 1 is missing"):
        dist.merge_shards(tmp_path, 2, 6, ["features"])
    dist.write_shard(tmp_path, 1, np.array([1, 2, 5]), {"features": full[:3]})
    with pytest.raises(CorruptFileError, match=r"1 missing \(e.g. \[3\]\), 1 repeated \(e.g. \[2\]\)"):
        dist.merge_shards(tmp_path, 2, 6, ["features"])


def test_kmeans_is_refused_under_torchrun_in_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(InputError, match="do not shard under torchrun") as info:
        dataset_features(arrays_dataset(4), "kmeans", options={"cache": False})
    assert "\n" not in str(info.value)


def test_missing_rendezvous_variables_are_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="MASTER_ADDR, MASTER_PORT, RANK not set: launch .* torchrun"):
        dataset_features(arrays_dataset(4), tiny_module(), device="cpu", options={"cache": False})


def test_single_process_dataset_features_is_extract_features(tmp_path):
    train, test = arrays_dataset(5), arrays_dataset(3)
    got = dataset_features(train, tiny_module(), device="cpu", others=[test], options={"cache": False})
    assert len(got) == 2
    for ds, features in zip((train, test), got):
        np.testing.assert_array_equal(features, extract_features(ds, tiny_module(), device="cpu", cache=False,
                                                                 progress=False))
    with pytest.raises(InputError, match="several datasets"):
        dataset_features(train, tiny_module(), others=[test], options={"output": tmp_path / "f.npy"})


# -- two gloo processes ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, n: int, out: str) -> None:
    # what torchrun would set; dataset_features starts and ends the gloo group itself
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    for all_ranks in (False, True):  # the second call hits the cache rank 0 filled
        got = dataset_features(arrays_dataset(n), tiny_module(), device="cpu", all_ranks=all_ranks,
                               options={"views": ("none", "hflip"), "batch_size": 2,
                                        "cache_dir": Path(out) / "cache"}, shard_dir=out)[0]
        assert torch.distributed.is_initialized()  # joined once, kept for the next call
        name = Path(out) / f"rank{rank}.{'all' if all_ranks else 'one'}.npy"
        np.save(name, np.zeros(0) if got is None else np.stack([np.asarray(got[0]), np.asarray(got[1])]))
    dist.teardown()
    assert not torch.distributed.is_initialized()


def test_two_gloo_ranks_give_the_single_process_features(tmp_path):
    n = 11  # not divisible by the world size: rank 1 gets one row fewer
    torch.multiprocessing.spawn(_worker, args=(2, free_port(), n, str(tmp_path)), nprocs=2)
    single = extract_features(arrays_dataset(n), tiny_module(), device="cpu", views=("none", "hflip"),
                              cache=False, progress=False)
    rank0 = np.load(tmp_path / "rank0.one.npy")
    assert rank0.shape == (2, n, 6)
    np.testing.assert_allclose(rank0[0], single[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rank0[1], single[1], rtol=1e-5, atol=1e-6)
    assert np.load(tmp_path / "rank1.one.npy").size == 0  # all_ranks=False: rank 1 got None
    # all_ranks=True, from rank 0's cache entry this time: both ranks get the same arrays
    np.testing.assert_array_equal(np.load(tmp_path / "rank0.all.npy"), rank0)
    np.testing.assert_array_equal(np.load(tmp_path / "rank1.all.npy"), rank0)
    assert not list(tmp_path.glob(".dmlp-shards-*"))  # the exchange folders are gone
    # rank 0 stored the merged result under the single-process key: a later run hits it
    cached = extract_features(arrays_dataset(n), tiny_module(), device="cpu", views=("none", "hflip"),
                              cache_dir=tmp_path / "cache", progress=False)
    assert isinstance(cached[0], np.memmap)
    np.testing.assert_array_equal(cached[0], rank0[0])


def test_dmlp_features_under_torchrun_matches_one_process(tmp_path):
    rng = np.random.default_rng(0)
    for c, count in (("cat", 7), ("dog", 6)):  # 13 images for 2 ranks
        folder = tmp_path / "imgs" / c
        folder.mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out" / "f.npy"
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env.update(DMLP_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         "-m", "dmlp_plugin", "features", "--dataset", "imagefolder", "--root", str(tmp_path / "imgs"),
         "--backbone", TINY, "--image-size", "16", "--device", "cpu", "--batch-size", "4", "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote") == 1  # rank 0 alone writes and reports
    assert "extracted on 2 ranks" in proc.stdout
    from dmlp_plugin.data import load_dataset

    single = extract_features(load_dataset("imagefolder", tmp_path / "imgs"), TINY, image_size=16,
                              device="cpu", cache=False, progress=False)
    merged = np.load(out)
    assert merged.shape == (13, 96)
    np.testing.assert_allclose(merged, single, rtol=1e-4, atol=1e-5)
    assert not list(out.parent.glob(".dmlp-shards-*"))
    assert len(list(FeatureCache(tmp_path / "cache" / "features").root.glob("*.none.npy"))) == 1
