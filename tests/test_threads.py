"""Choosing torch's thread count for a run on a machine other jobs share."""

from __future__ import annotations

import pytest
import torch

from dmlp_plugin.errors import ConfigError
from dmlp_plugin.threads import ENV_THREADS, choose_threads, torch_threads


@pytest.fixture(autouse=True)
def no_thread_env(monkeypatch):
    monkeypatch.delenv(ENV_THREADS, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.05, 2),   # idle: every core
    (2, 1.1, 1),    # one busy job on two cores: one thread
    (2, 3.5, 1),    # overloaded: still one
    (16, 4.2, 12),  # a shared node
    (1, 0.0, 1),
])
def test_auto_leaves_the_busy_cores_to_the_other_jobs(cores, load, expected):
    assert choose_threads("auto", cores=cores, load=load) == expected


def test_explicit_counts_env_and_omp_win(monkeypatch):
    assert choose_threads(3, cores=2, load=0.0) == 3
    assert choose_threads("2") == 2
    assert choose_threads(None) is None  # torch's own setting
    monkeypatch.setenv(ENV_THREADS, "1")
    assert choose_threads(None) == 1
    assert choose_threads("auto", cores=8, load=0.0) == 1  # a standing choice beats the default
    assert choose_threads(3) == 3  # an explicit count beats both
    monkeypatch.delenv(ENV_THREADS)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert choose_threads("auto", cores=8, load=0.0) is None  # the user already chose


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5, True])
def test_bad_thread_counts_are_config_errors(bad):
    with pytest.raises(ConfigError, match="threads must be a count"):
        choose_threads(bad)


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_purify_dataset_runs_with_the_chosen_threads_and_restores_them(monkeypatch):
    import numpy as np

    from dmlp_plugin import PurifyConfig, purify_dataset
    from dmlp_plugin import purify as purify_module

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    features = rng.normal(size=(600, 8)).astype(np.float32) + 3 * np.eye(3, 8)[labels]
    seen = []
    before = torch.get_num_threads()
    run = dict(val_indices=np.arange(60), val_labels=labels[:60], config=PurifyConfig(rounds=1),
               on_epoch=lambda epoch, record: seen.append(torch.get_num_threads()))
    result = purify_dataset(features, labels, threads=1, **run)
    assert set(seen) == {1} and result.metadata["threads"] == 1
    assert torch.get_num_threads() == before
    # "auto" measures the load only for inputs big enough for threads to matter; a small
    # run takes one thread, unless the environment chose
    monkeypatch.delenv("DMLP_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert purify_dataset(features, labels, **run).metadata["threads"] == 1
    monkeypatch.setenv("DMLP_THREADS", "2")
    assert purify_dataset(features, labels, **run).metadata["threads"] == 2
    monkeypatch.delenv("DMLP_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert purify_dataset(features, labels, **run).metadata["threads"] is None  # the user chose already
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(purify_module, "_AUTO_MIN_SIZE", 0)
    monkeypatch.setattr("dmlp_plugin.threads._load", lambda window=0.25: 5.0)  # every core busy
    seen.clear()
    assert purify_dataset(features, labels, **run).metadata["threads"] == 1 and set(seen) == {1}
    with pytest.raises(ConfigError, match="threads must be"):
        purify_dataset(features, labels, threads=0, **run)
