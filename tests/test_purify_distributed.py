"""Purification under torchrun: the rows' features divided between processes (gloo, CPU),
the labels those of one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dmlp_plugin import PurifyConfig, PurifyResult, purify_dataset

from streaming_fixtures import assert_agree, planted
from test_features_distributed import TORCHRUN_VARS, free_port, single_process  # noqa: F401  (autouse)


def _write_inputs(folder: Path, seed: int = 0) -> dict[str, Path]:
    x, clean, noisy, trusted = planted(seed=seed)
    paths = {}
    for name, arr in (("features", x.astype(np.float16)), ("labels", noisy), ("val_indices", trusted),
                      ("val_labels", clean[trusted]), ("clean", clean)):
        paths[name] = folder / f"{name}.npy"
        np.save(paths[name], arr)
    return paths


def _inputs(folder: Path) -> dict:
    load = {k: np.load(folder / f"{k}.npy", mmap_mode="r" if k == "features" else None)
            for k in ("features", "labels", "val_indices", "val_labels")}
    return dict(val_indices=load["val_indices"], val_labels=load["val_labels"], seed=0, device="cpu",
                features=load["features"], labels=load["labels"])


#: Each run of the two processes, against the same run in one process.
CONFIGS = {
    # The network candidate needs all rows at random and is left out when the rows are
    # split between processes; one process without it is what two compute.
    "whole": PurifyConfig(mlp_candidate=False),
    "chunks": PurifyConfig(max_memory="14MB"),  # each process reads its ~2,850 rows in chunks
    "paper": PurifyConfig.paper(epochs=30, batch_size=500),  # IPC: 12 batches, 6 a process
}


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from dmlp_plugin import distributed

    kw = _inputs(Path(folder))
    features, labels = kw.pop("features"), kw.pop("labels")
    for name, config in CONFIGS.items():
        purify_dataset(features, labels, config=config, **kw).save(Path(folder) / f"{name}-rank{rank}.npz")
    distributed.teardown()


@pytest.mark.slow
def test_two_gloo_processes_give_the_labels_of_one(tmp_path):
    _write_inputs(tmp_path)
    torch.multiprocessing.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2)
    kw = _inputs(tmp_path)
    features, labels = kw.pop("features"), kw.pop("labels")
    for name, config in CONFIGS.items():
        single = purify_dataset(features, labels, config=config, **kw)
        rank0 = PurifyResult.load(tmp_path / f"{name}-rank0.npz")
        rank1 = PurifyResult.load(tmp_path / f"{name}-rank1.npz")
        np.testing.assert_array_equal(rank0.soft_labels, rank1.soft_labels)  # the same reduced sums everywhere
        memory = rank0.metadata["memory"]
        assert memory["processes"] == 2
        assert memory["streamed"] == (memory["chunk_rows"] is not None) == (name == "chunks")
        if name == "chunks":
            assert memory["chunk_rows"] < 2000
        assert rank0.metadata.get("selected") == single.metadata.get("selected")
        assert_agree(rank0, single)
        if name == "paper":  # each process steps its own batches; gradients all-reduced: exact
            np.testing.assert_array_equal(rank0.labels, single.labels)


@pytest.mark.slow
def test_dmlp_purify_under_torchrun_writes_once_and_matches_one_process(tmp_path):
    paths = _write_inputs(tmp_path, seed=1)
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env.update(OMP_NUM_THREADS="1")
    out = tmp_path / "out" / "purified.npz"
    args = ["purify", "--features", str(paths["features"]), "--labels", str(paths["labels"]),
            "--val-indices", str(paths["val_indices"]), "--val-labels", str(paths["val_labels"]),
            "--device", "cpu", "--no-progress", "--export", "npy"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         "-m", "dmlp_plugin", *args, "-o", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("written") == 1 and "shared between 2 processes" in proc.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["purified.labels.npy", "purified.npz"]
    kw = _inputs(tmp_path)
    single = purify_dataset(kw.pop("features"), kw.pop("labels"), config=CONFIGS["whole"], **kw)
    assert_agree(PurifyResult.load(out), single)
