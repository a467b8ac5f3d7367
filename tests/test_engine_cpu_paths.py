"""CPU fast paths: the softmax helpers match torch, and subnormals are flushed only during a run."""

from __future__ import annotations

import pytest
import torch

from dmlp_plugin.engine.softmax import log_softmax_rows, softmax_rows
from engine_fixtures import gen


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_match_torch_on_large_and_infinite_logits(dtype):
    x = torch.randn(3, 50, 10, generator=gen(0), dtype=dtype) * 200  # overflows exp() unshifted
    x[0, :5, 3] = float("-inf")  # a class ruled out
    torch.testing.assert_close(softmax_rows(x), torch.softmax(x, -1))
    torch.testing.assert_close(log_softmax_rows(x), torch.log_softmax(x, -1))
    assert softmax_rows(x).dtype == dtype and bool(torch.isfinite(softmax_rows(x)).all())


def test_inputs_are_not_modified():
    x = torch.randn(4, 10, generator=gen(1))
    before = x.clone()
    softmax_rows(x)
    log_softmax_rows(x)
    assert torch.equal(x, before)


def test_purify_flushes_subnormals_only_while_it_runs():
    """The engine turns flush-to-zero on for speed and must leave the process as it was."""
    from dmlp_plugin import PurifyConfig
    from engine_fixtures import engine_inputs, planted_clusters, run_engine

    subnormal = torch.tensor([1e-40])
    assert float(subnormal * 1.0) != 0.0
    inputs = engine_inputs(planted_clusters(n=400, dim=6, num_trusted=60, seed=3))
    for config, callback in ((PurifyConfig(rounds=2, mlp_candidate=False), "on_round"),
                             (PurifyConfig.paper(epochs=2, batch_size=100), "on_epoch")):
        seen = []
        run_engine(inputs, config, **{callback: lambda k, _: seen.append(float(subnormal * 1.0))})
        assert len(seen) == 2 and all(value == 0.0 for value in seen), config.mode  # flushed during the run
        assert float(subnormal * 1.0) != 0.0  # and restored afterwards


def test_subnormals_are_flushed_on_every_pool_thread_too():
    """``torch.set_flush_denormal`` reaches only the calling thread; a parallel op's other
    threads must flush as well, or products over subnormal labels crawl (70× measured)."""
    from dmlp_plugin.engine.subnormals import _gomp_parallel, flushing_subnormals

    if _gomp_parallel() is None:
        pytest.skip("no OpenMP runtime found in this process (only the calling thread is flushed)")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # 2**20 elements: torch splits the multiply across both threads.
        tiny = torch.full((1 << 20,), 1e-40)
        assert bool((tiny * 1e10 > 0).all())  # not flushed anywhere before
        with flushing_subnormals(torch.device("cpu")):
            assert bool((tiny * 1e10 == 0).all())  # flushed on every thread's share
        assert bool((tiny * 1e10 > 0).all())  # and restored on every thread
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_underflowing_probabilities_stay_normal_floats(dtype):
    """exp() takes a ~25x slower path wherever it underflows, so the helpers floor the
    shifted logits: a vanishing probability comes out as a tiny normal float, not 0."""
    from dmlp_plugin.engine.softmax import softmax_

    tiny = torch.finfo(dtype).tiny
    x = torch.tensor([[0.0, -1e4, -50.0], [-3.0, 2.0, -2e4]], dtype=dtype)
    for p in (softmax_rows(x), softmax_(x.T.clone(), 0).T):
        assert bool((p >= tiny).all()) and bool((p < 4 * tiny).any())  # floored, not 0
        torch.testing.assert_close(p, torch.softmax(x, -1), rtol=1e-6, atol=1e-30)
    assert log_softmax_rows(x)[0, 1] == -1e4  # log-probabilities are exact, not floored
