"""The CPU softmax helpers agree with torch's fused kernels, extreme inputs included."""

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
