"""``benchmarks/gpu_check.sh``: its dry run on the CPU, and the ``cuda``-marked tests it runs on a GPU.

The dry run needs ``../shared`` (it prepares its inputs from it) and skips cleanly without it.
The Table 4 stage (Co-teaching with and without ``--dmlp``, smoke) takes about a minute on two
cores, so the main dry-run test leaves it out and a separate ``slow`` test runs that stage alone.
The ``cuda`` tests skip without a GPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from shared_fixtures import needs_shared, real_cifar10_root, shared_dir  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
STAGES = ["setup", "cuda-tests", "speed", "features", "table4", "pretrain", "simclr"]

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(env_extra: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **env_extra)
    env.pop("OUT", None)
    env.update({k: v for k, v in env_extra.items() if k == "OUT"})
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def prepared(tmp_path, real_cifar10_root):
    shared = shared_dir()
    if shared is None:
        pytest.skip(needs_shared("the GPU check's inputs (images, features, the Co-teaching snapshot)"))
    env = {"DMLP_GPU_DATA": str(tmp_path / "gpu-data"), "DMLP_GPU_WORK": str(tmp_path / "work"),
           "DMLP_SHARED": str(shared), "DMLP_GPU_CIFAR": str(real_cifar10_root), "PYTHON": "python"}
    done = _run(env, "--prepare", timeout=120)
    assert done.returncode == 0, done.stderr
    features = tmp_path / "gpu-data" / "shared" / "features" / "cifar10_kmeans_train.npz"
    with np.load(features) as z:
        assert z["train"].shape == (50000, 256) and z["train"].dtype == np.float16
        assert z["test"].shape == (10000, 256)  # dmlp reproduce --features reads both splits
    copied = tmp_path / "gpu-data" / "shared" / "upstream" / "Co-teaching.tar.gz"
    assert copied.is_file() and not copied.is_symlink()  # copies travel to the device, links do not
    return env


def _rows(summary: str) -> dict[str, list[str]]:
    rows = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in STAGES:
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
def test_dry_run_runs_every_stage_on_the_cpu_and_writes_the_summary(prepared, tmp_path):
    out = tmp_path / "out"
    start = time.perf_counter()
    done = _run({**prepared, "OUT": str(out), "DMLP_GPU_CHECK_SKIP": "table4"}, "--dry-run", timeout=240)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = (out / "gpu_check_summary.md").read_text()
    assert summary.startswith("## dmlp-plugin GPU check (dry run")
    assert summary.strip() in done.stdout  # the same summary is printed
    rows = _rows(summary)
    assert list(rows) == STAGES
    assert rows["table4"][1:] == ["skipped", "0", "not selected"]
    for name in ("setup", "cuda-tests", "speed", "features", "pretrain", "simclr"):
        assert rows[name][1] == "ok", rows[name]
    assert "no GPU" in rows["setup"][3]
    assert re.search(r"\d+ skipped|\d+ deselected", rows["cuda-tests"][3])  # the CUDA tests skip on a CPU
    assert re.search(r"paper [\d.]+ s/100 ep .*default .*naive [\d.]+ s/100 ep", rows["speed"][3])
    assert re.search(r"resnet18-cifar: \d+ img/s float32", rows["features"][3])
    assert re.search(r"SimCLR paper: labels [\d.]+% -> [\d.]+%.*SimCLR default: labels", rows["simclr"][3])
    assert (out / "gpu_check.log").is_file()
    print(f"dry run: {seconds:.0f} s")


@pytest.mark.slow
@pytest.mark.upstream
def test_dry_run_table4_stage_runs_coteaching_with_and_without_dmlp(prepared, tmp_path):
    if not os.environ.get("DMLP_UPSTREAM_ROOT"):
        pytest.skip("DMLP_UPSTREAM_ROOT is not set (upstream runs are opted into with it)")
    done = _run({**prepared, "DMLP_GPU_CHECK_ONLY": "setup,table4"}, "--dry-run", timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    rows = _rows(done.stdout)
    assert rows["table4"][1] == "ok" and rows["speed"][1] == "skipped"
    result = rows["table4"][3]
    assert re.search(r"Co-teaching [\d.]+% after 1 ep", result)
    assert re.search(r"DMLP-Co-teaching [\d.]+% after 1 ep \(\d+ s, injected train\)", result)


def test_an_unprepared_data_folder_is_refused_with_the_fix(tmp_path):
    done = _run({"DMLP_GPU_DATA": str(tmp_path / "none"), "DMLP_GPU_WORK": str(tmp_path / "w")}, "--dry-run",
                timeout=30)
    assert done.returncode == 2 and "--prepare" in done.stderr
    assert _run({}, "--bogus", timeout=30).returncode == 2


# -- what gpu_check.sh's cuda-tests stage runs -----------------------------------------------------


def _problem(n=3000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d)) * 3
    clean = rng.integers(0, 10, n)
    x = (centres[clean] + rng.normal(size=(n, d))).astype(np.float32)
    noisy = clean.copy()
    flip = rng.random(n) < 0.5
    noisy[flip] = rng.integers(0, 10, flip.sum())
    trusted = rng.choice(n, 200, replace=False)
    return x, clean, noisy, trusted


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("mode", ["default", "paper"])
def test_purify_on_cuda_agrees_with_the_cpu(mode):
    from dmlp_plugin import PurifyConfig, purify_dataset

    x, clean, noisy, trusted = _problem()
    # paper mode needs ~30 epochs to move these labels (10 left them at 57% on both devices)
    config = PurifyConfig.paper(epochs=30) if mode == "paper" else PurifyConfig(rounds=1)
    kw = dict(val_indices=trusted, val_labels=clean[trusted], config=config, seed=0, progress=False)
    gpu = purify_dataset(x, noisy, device="cuda", **kw)
    cpu = purify_dataset(x, noisy, device="cpu", **kw)
    assert gpu.metadata.get("device", "cuda").startswith("cuda")
    assert (gpu.labels == cpu.labels).mean() > 0.97
    assert (gpu.labels == clean).mean() > (noisy == clean).mean() + 0.2


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("mode", ["default", "paper"])
def test_purify_in_chunks_on_cuda_matches_in_memory(mode):
    """max_memory on CUDA: chunks of rows (and groups of IPC batches, solvers on the host)
    moved to the GPU as the run reaches them."""
    from dmlp_plugin import PurifyConfig, purify_dataset
    from dmlp_plugin.streaming import plan_memory

    from streaming_fixtures import assert_agree, planted

    x, clean, noisy, trusted = planted(n=3000, seed=2)
    # Read in chunks, rows cannot be drawn at random, so the default leaves its network candidate
    # out there; the in-memory run it must match leaves it out too.
    config = PurifyConfig.paper(epochs=30, batch_size=500) if mode == "paper" else PurifyConfig(mlp_candidate=False)
    whole = plan_memory(len(x) - len(trusted), x.shape[1], 10, config)
    kw = dict(val_indices=trusted, val_labels=clean[trusted], seed=0, device="cuda")
    in_memory = purify_dataset(x, noisy, config=config, **kw)
    chunked = purify_dataset(x, noisy, config=config.replace(max_memory=int(whole.in_memory_bytes * 0.8)), **kw)
    assert chunked.metadata["memory"]["streamed"]
    assert_agree(chunked, in_memory)


@pytest.mark.cuda
@needs_cuda
def test_feature_extraction_on_cuda_matches_the_cpu():
    from dmlp_plugin.data.arrays import ArrayDataset
    from dmlp_plugin.features import extract_features

    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), np.zeros(64, np.int64), name="rand")
    torch.manual_seed(0)
    from dmlp_plugin.features.backbones import create_backbone

    net = create_backbone("resnet18-cifar")
    opts = dict(cache=False, progress=False, batch_size=32, amp=False)
    gpu = extract_features(data, net, device="cuda", **opts)
    cpu = extract_features(data, net, device="cpu", **opts)
    assert gpu.shape == cpu.shape == (64, 512)
    np.testing.assert_allclose(gpu, cpu, rtol=2e-2, atol=2e-2)


@pytest.mark.cuda
@needs_cuda
def test_simclr_pretraining_steps_on_cuda(tmp_path):
    from dmlp_plugin.data.arrays import ArrayDataset
    from dmlp_plugin.features import SimCLRConfig, pretrain_simclr

    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.integers(0, 256, (128, 32, 32, 3), dtype=np.uint8), np.zeros(128, np.int64), name="rand")
    result = pretrain_simclr(data, SimCLRConfig(epochs=2, batch_size=64, warmup_epochs=0, num_workers=0), device="cuda",
                             checkpoint=tmp_path / "s.pt", progress=False)
    assert len(result.history) == 2 and all(np.isfinite(result.history))
    assert next(result.backbone.parameters()).device.type == "cuda"
    assert (tmp_path / "s.pt").is_file()
