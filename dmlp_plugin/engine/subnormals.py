"""Flushing subnormal floats to zero on every CPU thread that torch computes on.

Softmax probabilities of confident rows underflow into the subnormal range (below
1.2e-38 in float32), and x86 arithmetic on subnormals is one to two orders of magnitude
slower. ``torch.set_flush_denormal`` sets the flush flags of the *calling* thread only.
The worker threads of torch's OpenMP pool, which MKL's products share, keep their own
flags. With two threads a product over subnormal-laden label chains then ran 70× slower
than with one (4 s against 54 ms for a 70 × 200,000 by 200,000 × 512 product).

:func:`flushing_subnormals` therefore also runs ``torch.set_flush_denormal`` on each
thread of the OpenMP pool, through the runtime's own ``GOMP_parallel`` entry point. GNU
libgomp and LLVM libomp both export it. The runtime is found among the libraries this
process has loaded (``/proc/self/maps``, so Linux only). Where that trick does not apply
(another OS, no runtime loaded, no such symbol, ctypes refusing the call), only the
calling thread is flushed, which is all that one torch thread needs; the reason is
logged once, at debug level.

torch has no getter for the flag, so each thread's state is read by a probe: one
multiplication that comes out zero only when the thread flushes. Afterwards every thread
gets back the state it had, so a user's ``torch.set_flush_denormal(True)`` survives a run.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import re
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

import torch

__all__ = ["flushing_subnormals"]

_log = logging.getLogger(__name__)

_PARALLEL_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

# A subnormal double and a factor: their product is subnormal and inexact, so it is zero
# exactly when the thread treats subnormal inputs as zero (DAZ) or flushes subnormal
# results (FTZ). torch.set_flush_denormal sets and clears both bits together, and only
# on x86, where Python's float arithmetic runs under the same flags (SSE). They live in
# a tuple so that Python cannot fold the product at compile time.
_PROBE = (1e-310, 1.5)

# Thread id -> the flag it had before the run; None where the pool was not reached.
_PoolState = dict[int, bool] | None

# Set once a call into the runtime failed: from then on only the calling thread is flushed.
_pool_unusable = False


@contextlib.contextmanager
def flushing_subnormals(device: torch.device) -> Iterator[None]:
    """Flush subnormals to zero on all of torch's CPU threads inside the block.

    Nothing happens on other devices or on CPUs without the flag. Each thread gets back
    the state it had on entry (nested blocks and a user's own setting included).
    """
    if device.type != "cpu":
        yield
        return
    was = _flushing_here()
    if not torch.set_flush_denormal(was):  # a CPU without the flag
        yield
        return
    # The pool first, while the calling thread still has the user's state: a pool thread
    # the runtime creates for this call (after a thread-count change) inherits the state
    # of the thread that creates it, and would otherwise record ours as its own.
    pool = _set_on_pool_threads(True)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        _restore_pool_threads(pool)
        # Last: the calling thread is also one of the pool's, and was already set above.
        torch.set_flush_denormal(was)


def _flushing_here() -> bool:
    """Whether the calling thread flushes subnormals now."""
    tiny, factor = _PROBE
    return tiny * factor == 0.0


def _set_on_pool_threads(flag: bool) -> _PoolState:
    """Set the flag on every thread of the OpenMP pool; the state each had before."""
    threads = torch.get_num_threads()
    if threads < 2:
        return None
    before: dict[int, bool] = {}

    def body(_: int | None) -> None:
        # Under the GIL (a ctypes callback takes it), so the dict needs no lock.
        before[threading.get_ident()] = _flushing_here()
        torch.set_flush_denormal(flag)

    return before if _run_on_pool(body, threads) else None


def _restore_pool_threads(before: _PoolState) -> None:
    """Give every pool thread recorded in ``before`` its old state; others keep theirs."""
    if not before:
        return

    def body(_: int | None) -> None:
        was = before.get(threading.get_ident())
        if was is not None:
            torch.set_flush_denormal(was)

    # The thread count may have changed inside the block; use as many as were set.
    _run_on_pool(body, len(before))


def _run_on_pool(body: Callable[[int | None], None], threads: int) -> bool:
    """Run ``body`` once on each of ``threads`` OpenMP threads; False if that is not possible."""
    global _pool_unusable
    parallel = None if _pool_unusable else _gomp_parallel()
    if parallel is None:
        return False
    try:
        parallel(_PARALLEL_BODY(body), None, threads, 0)
    except (ctypes.ArgumentError, OSError) as exc:  # OSError: a fault that ctypes reports
        _pool_unusable = True  # so the fallback is logged once, not on every run
        _log.debug("subnormals are flushed on the calling thread only: GOMP_parallel failed (%s)", exc)
        return False
    return True


@functools.lru_cache(maxsize=1)
def _gomp_parallel() -> Callable[..., None] | None:
    """``GOMP_parallel(fn, data, num_threads, flags)`` of the loaded OpenMP runtime, or None."""
    if not sys.platform.startswith("linux"):
        _log.debug("subnormals are flushed on the calling thread only: "
                   "the OpenMP pool is reached only on Linux")
        return None
    for path in _runtime_libraries():
        try:
            parallel = ctypes.CDLL(path).GOMP_parallel
        except (OSError, AttributeError):  # not loadable, or no such symbol
            continue
        parallel.argtypes = [_PARALLEL_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
        return parallel
    _log.debug("subnormals are flushed on the calling thread only: "
               "no loaded OpenMP runtime exports GOMP_parallel")
    return None


def _runtime_libraries() -> list[str]:
    """Paths of the OpenMP runtimes this process has loaded, torch's own first."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    libraries = {line.split()[-1] for line in maps.splitlines()
                 if re.search(r"/lib(gomp|omp|iomp5)[^/]*\.so", line)}
    # Another package may have loaded a second runtime; torch's own comes first.
    torch_dir = str(Path(torch.__file__).parent)
    return sorted(libraries, key=lambda path: (not path.startswith(torch_dir), path))
