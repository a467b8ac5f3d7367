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
    from dmlp_plugin.engine import purify_tensors
    from engine_fixtures import engine_inputs, planted_clusters

    subnormal = torch.tensor([1e-40])
    assert float(subnormal * 1.0) != 0.0
    seen = []
    inputs = engine_inputs(planted_clusters(n=400, dim=6, num_trusted=60, seed=3))
    purify_tensors(**inputs, config=PurifyConfig(epochs=2, eac_period=1), generator=gen(0),
                   on_epoch=lambda epoch, _: seen.append(float(subnormal * 1.0)))
    assert seen and all(value == 0.0 for value in seen)  # flushed during the run
    assert float(subnormal * 1.0) != 0.0  # and restored afterwards
