"""Engine hygiene: what each pipeline reads on the host (the paper's epochs nothing, the
default's rounds only the selection's record), the flush-to-zero state a run leaves behind
(and its fallback), and the stage timings a result reports."""

from __future__ import annotations

import collections
import ctypes
import logging
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dmlp_plugin import PurifyConfig, purify_dataset
from dmlp_plugin.engine import subnormals
from dmlp_plugin.engine.candidates import GivenLabels, LogisticPath, Network
from dmlp_plugin.engine.rounds import LeastSquaresRounds
from engine_fixtures import engine_inputs, one_torch_thread, planted_clusters, run_engine  # noqa: F401

# -- host reads in the epoch loop ------------------------------------------------------

# Tensor methods and torch functions that hand a value to the host: each one is a
# device synchronisation on CUDA.
_READING_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__",
                    "nonzero", "unique", "masked_select", "argwhere", "cpu", "numpy")
_READING_FUNCTIONS = ("nonzero", "unique", "masked_select", "argwhere")


def _reads_on_host(index) -> bool:
    """Indexing by a boolean mask (torch finds its nonzeros) or by a 0-d integer tensor
    (torch calls ``.item()`` on it) reads the index on the host."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(part, torch.Tensor)
               and (part.dtype == torch.bool or (part.dim() == 0 and not part.is_floating_point()))
               for part in parts)


class HostReads:
    """Counts, while :attr:`on`, the Python-level calls that read a tensor value on the
    host, with the engine line that made each. Reads inside torch's C++ kernels (a
    checked Cholesky, say) are not seen: this bounds what the engine code itself does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        self.sites: collections.Counter[str] = collections.Counter()
        for name in _READING_METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._counting(getattr(torch.Tensor, name)))
        for name in _READING_FUNCTIONS:
            monkeypatch.setattr(torch, name, self._counting(getattr(torch, name)))
        monkeypatch.setattr(torch, "where", self._counting(
            torch.where, lambda *args, **kw: len(args) + len(kw) == 1))  # where(cond) = nonzero
        monkeypatch.setattr(torch.Tensor, "__getitem__", self._counting(
            torch.Tensor.__getitem__, lambda self, index: _reads_on_host(index)))
        monkeypatch.setattr(torch.Tensor, "__setitem__", self._counting(
            torch.Tensor.__setitem__, lambda self, index, value: _reads_on_host(index)))

    @property
    def total(self) -> int:
        return sum(self.sites.values())

    def _counting(self, fn, reads=None):
        def counted(*args, **kwargs):
            if self.on and (reads is None or reads(*args, **kwargs)):
                self.sites[f"{fn.__name__} at {_engine_line()}"] += 1
            return fn(*args, **kwargs)
        return counted


def _engine_line() -> str:
    frame = sys._getframe(2)
    while frame is not None and "dmlp_plugin" not in frame.f_code.co_filename:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename.rsplit('dmlp_plugin/', 1)[-1]}:{frame.f_lineno}"


def _two_view_inputs(two_views: bool) -> dict:
    inputs = engine_inputs(planted_clusters(n=600, dim=8, num_trusted=80, seed=5))
    if two_views:
        inputs.update(features_view2=inputs["features"].flip(1),
                      val_features_view2=inputs["val_features"].flip(1))
    return inputs


def _reads_per_step(monkeypatch, config, *, two_views: bool = False,
                    on_step=None) -> tuple[list[int], HostReads]:
    """Host reads in each step after the first (paper mode: epochs 2..E; the default: rounds
    2..R, 1-based), and the counter.

    Counting starts when step 1's callback returns and each later callback closes its
    step, so every line of the loop body is covered from the second step on."""
    inputs = _two_view_inputs(two_views)
    reads = HostReads(monkeypatch)
    counts: list[int] = []
    paper = config.mode == "paper"
    steps = config.epochs if paper else config.rounds
    first = 0 if paper else 1  # on_epoch counts from 0, on_round from 1

    def callback(step: int, record) -> None:
        if on_step is not None:
            on_step(step, record)
        if reads.on:
            counts.append(reads.total - sum(counts))
        reads.on = step - first < steps - 1

    run_engine(inputs, config, **{"on_epoch" if paper else "on_round": callback})
    assert len(counts) == steps - 1
    return counts, reads


def test_the_counter_sees_a_read(monkeypatch):
    """The control: an ``on_epoch`` that reads its metrics is one read per epoch."""
    counts, _ = _reads_per_step(monkeypatch, PurifyConfig.paper(epochs=4, eac_period=2),
                                on_step=lambda epoch, metrics: metrics.tolist())
    assert counts == [1, 1, 1]


@pytest.mark.parametrize("two_views", [False, True])
@pytest.mark.parametrize("overrides", [
    {},  # IPC + the linear head mixing its own softmax
    {"project_simplex": True, "label_optimizer": "sgd", "prior": "trusted"},
], ids=["paper", "paper-variants"])
def test_paper_mode_epochs_read_nothing_on_host(monkeypatch, overrides, two_views):
    """docs/engine.md: paper mode's epochs never wait for the device."""
    config = PurifyConfig.paper(epochs=5, eac_period=2, **overrides)
    counts, reads = _reads_per_step(monkeypatch, config, two_views=two_views)
    assert counts == [0] * 4, dict(reads.sites)


def test_reshuffled_partitions_read_only_in_their_epoch(monkeypatch):
    config = PurifyConfig.paper(epochs=7, eac_period=3, reshuffle_every=3)
    counts, reads = _reads_per_step(monkeypatch, config)
    # 1-based epochs 2..7; the partition is re-drawn at the start of epochs 4 and 7.
    assert [n > 0 for n in counts] == [False, False, True, False, False, True], dict(reads.sites)


@pytest.mark.parametrize("two_views", [False, True])
def test_default_rounds_read_only_the_selections_record(monkeypatch, two_views):
    """The default pipeline's rounds wait for the device only to record each candidate, by
    design (the selection compares scores on the host): its trusted log-loss, the fraction of
    labels changed, the label accuracy (clean labels are given here) and the comparison with
    the best so far, four reads a round whatever the number of views. The round itself (the
    least-squares fits, cross-fitting, calibration, mixing) reads nothing: fold rows are found
    once, temperatures are picked with take(), not [argmin]."""
    config = PurifyConfig(rounds=4, given_candidate=False, logistic_candidate=False, mlp_candidate=False)
    counts, reads = _reads_per_step(monkeypatch, config, two_views=two_views)
    assert counts == [4] * 3, dict(reads.sites)
    assert all(site.split(" at ")[1].startswith("engine/pipeline.py") for site in reads.sites), dict(reads.sites)


# -- flush-to-zero state ------------------------------------------------------------

_LARGE = 1 << 20  # elements: torch splits an elementwise product over both threads


def _flushed_share(tiny: torch.Tensor) -> int:
    """How many entries of a subnormal tensor a product over all threads flushes."""
    return int((tiny * 1e10 == 0).sum())


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def fresh_runtime_lookup():
    """The runtime lookup is cached per process; forced failures must not leak."""
    lookup = subnormals._gomp_parallel  # the real one, even where a test replaces it
    lookup.cache_clear()
    yield
    lookup.cache_clear()


@pytest.fixture
def user_flushes():
    """The user turned flushing on before purifying; everything is turned off after."""
    torch.set_flush_denormal(True)
    yield
    subnormals._set_on_pool_threads(False)
    torch.set_flush_denormal(False)


def _small_run(config: PurifyConfig | None = None, on_round=None) -> torch.Tensor:
    inputs = engine_inputs(planted_clusters(n=400, dim=6, num_trusted=60, seed=3))
    out = run_engine(inputs, config or PurifyConfig(rounds=2, mlp_candidate=False), on_round=on_round)
    return out.soft_labels


def test_the_probe_reads_the_flag():
    assert not subnormals._flushing_here()
    torch.set_flush_denormal(True)
    try:
        assert subnormals._flushing_here()
    finally:
        torch.set_flush_denormal(False)
    assert not subnormals._flushing_here()


def test_a_users_flush_state_survives_a_run(user_flushes):
    assert subnormals._flushing_here()
    _small_run()
    assert subnormals._flushing_here()  # left on, as the user had it
    assert float(torch.tensor([1e-30]) * 1e-10) == 0.0


def test_each_pool_thread_gets_its_own_state_back(two_threads, user_flushes):
    """The user flushes on the calling thread only: afterwards the caller's share of a
    parallel product is flushed and the pool thread's is not, as before the run."""
    if subnormals._gomp_parallel() is None:
        pytest.skip("no OpenMP runtime found in this process (only the calling thread is flushed)")
    torch.set_flush_denormal(False)
    tiny = torch.full((_LARGE,), 1e-40)  # made while nothing flushes
    torch.set_flush_denormal(True)
    before = _flushed_share(tiny)
    assert 0 < before < _LARGE
    with subnormals.flushing_subnormals(torch.device("cpu")):
        assert _flushed_share(tiny) == _LARGE
    assert _flushed_share(tiny) == before

    subnormals._set_on_pool_threads(True)  # now every thread flushes
    _small_run()
    assert _flushed_share(tiny) == _LARGE  # and still does


def test_pool_threads_created_during_a_run_do_not_keep_its_flag():
    """A pool thread the runtime starts inside the block (here: the process's first
    parallel region) inherits its creator's flags; it must end up as the user had them.
    A fresh process, because a process's pool threads, once started, stay."""
    if subnormals._gomp_parallel() is None:
        pytest.skip("no OpenMP runtime found in this process (only the calling thread is flushed)")
    script = textwrap.dedent("""
        import numpy as np
        import torch
        from dmlp_plugin.engine import subnormals
        torch.set_num_threads(2)
        tiny = torch.from_numpy(np.full(1 << 20, 1e-40, np.float32))  # no parallel region yet
        with subnormals.flushing_subnormals(torch.device("cpu")):
            inside = int((tiny * 1e10 == 0).sum())
        print(inside, int((tiny * 1e10 == 0).sum()), subnormals._flushing_here())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(1 << 20), "0", "False"]


def _no_runtime(monkeypatch):
    monkeypatch.setattr(subnormals, "_runtime_libraries", lambda: [])


def _not_linux(monkeypatch):
    monkeypatch.setattr(subnormals, "sys", SimpleNamespace(platform="darwin"))


def _not_loadable(monkeypatch):
    monkeypatch.setattr(subnormals, "_runtime_libraries", lambda: ["/nonexistent/libgomp.so.1"])


def _symbol_missing(monkeypatch):
    monkeypatch.setattr(subnormals, "_runtime_libraries", lambda: ["libm.so.6"])  # no GOMP_parallel


def _call_fails(monkeypatch):
    def parallel(*args):
        raise ctypes.ArgumentError("argument 1: wrong type")
    monkeypatch.setattr(subnormals, "_gomp_parallel", lambda: parallel)
    monkeypatch.setattr(subnormals, "_pool_unusable", False)  # restored afterwards


@pytest.mark.parametrize("force", [_no_runtime, _not_linux, _not_loadable, _symbol_missing,
                                   _call_fails])
def test_without_the_runtime_trick_only_the_caller_flushes(monkeypatch, caplog, two_threads,
                                                           fresh_runtime_lookup, force):
    if force is _symbol_missing and not sys.platform.startswith("linux"):
        pytest.skip("needs a Linux libm")
    expected = _small_run()  # the real lookup, where this process has a runtime
    subnormals._gomp_parallel.cache_clear()
    force(monkeypatch)
    seen = []
    caplog.set_level(logging.DEBUG, logger=subnormals.__name__)
    for _ in range(2):  # the reason is logged once per process, not per run
        soft = _small_run(on_round=lambda k, _: seen.append(subnormals._flushing_here()))
    assert subnormals._gomp_parallel() is None or force is _call_fails
    assert torch.equal(soft.argmax(1), expected.argmax(1))
    torch.testing.assert_close(soft, expected)
    assert seen and all(seen)  # the calling thread was flushed throughout
    assert not subnormals._flushing_here()  # and restored
    records = [r for r in caplog.records if r.name == subnormals.__name__]
    assert len(records) == 1 and records[0].levelno == logging.DEBUG, records
    assert "calling thread only" in records[0].getMessage()


# -- stage timings -------------------------------------------------------------------

def test_timings_have_the_stages_a_result_reports():
    """``PurifyResult.timings`` is ``setup``, the pipeline's stages, the feature check and
    ``total``: the default's candidate families (each candidate's ``seconds`` is its
    family's), paper mode's factoring, epochs and finish."""
    data = planted_clusters(n=400, dim=6, num_trusted=60, seed=3)
    families = [LeastSquaresRounds.family, GivenLabels.family, LogisticPath.family, Network.family]
    for config, stages in ((PurifyConfig(rounds=2, given_candidate=True, mlp_candidate=True, mlp_hidden=32,
                                            mlp_epochs=2), families),
                           (PurifyConfig.paper(epochs=4, eac_period=2, batch_size=100),
                            ["factor", "epochs", "finish"])):
        result = purify_dataset(data.features, data.given, **data.purify_kwargs(), device="cpu", config=config)
        assert list(result.timings) == ["setup", *stages, "feature_check", "total"]
        seconds = [result.timings[key] for key in ("setup", *stages, "feature_check")]
        assert all(s >= 0 for s in seconds)
        assert sum(seconds) <= result.timings["total"]
        assert np.isfinite(result.timings["total"])
        for candidate in result.metadata.get("candidates", []):
            assert candidate["seconds"] == result.timings[candidate["family"]]
    assert {c["family"] for c in result.metadata.get("candidates", [])} == set()  # paper mode has none
