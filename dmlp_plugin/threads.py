"""How many CPU threads torch should use for a run, and using them for just that run.

Torch starts one OpenMP thread per core. On a machine other jobs also use (a shared lab
server, a cluster node, CI), a parallel region waits for its slowest thread, and a
thread the scheduler has parked stalls every small product: purification with two
threads on two busy cores ran 4-9x slower than with one. ``"auto"`` therefore counts
the cores the other jobs leave free, from the 1-minute load average measured before the
run starts (the CPU time ``/proc/stat`` counts over a quarter of a second; the 1-minute
load average where that is not available, which lags a job that has just started), and
never asks for more threads than that (nor fewer than one).
``benchmarks/busy_machine.py`` measures the effect.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

from .argument_names import shown
from .errors import ConfigError

__all__ = ["choose_threads", "torch_threads", "ENV_THREADS"]

#: Environment variable read when no thread count is given (``dmlp purify --threads``).
ENV_THREADS = "DMLP_THREADS"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot, from ``/proc/stat``; None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _load(window: float = 0.25) -> float | None:
    """How many cores other jobs keep busy right now."""
    first = _cpu_times()
    if first is not None:
        time.sleep(window)
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            return _cores() * (second[0] - first[0]) / (second[1] - first[1])
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return None


def choose_threads(threads: int | str | None = "auto", *, cores: int | None = None,
                   load: float | None = None) -> int | None:
    """The thread count for a run: ``None`` (leave torch as it is), or a count >= 1.

    Parameters
    ----------
    threads
        A count; ``"auto"`` (cores minus those other jobs keep busy, at least 1);
        ``None`` leaves torch's setting alone, as ``"auto"`` does when the user set
        ``OMP_NUM_THREADS``. With ``None`` or ``"auto"``, ``$DMLP_THREADS`` (a count or
        ``auto``) wins when set.
    cores, load
        The usable cores and how many of them other jobs keep busy; measured when not
        given (tests pass them).
    """
    if threads is None or threads == "auto":
        # $DMLP_THREADS is the user's standing choice; "auto" is only a default.
        threads = os.environ.get(ENV_THREADS) or threads
        if threads is None:
            return None
    if isinstance(threads, str):
        if threads == "auto":
            if os.environ.get("OMP_NUM_THREADS"):
                return None  # the user chose already
            cores = _cores() if cores is None else cores
            load = _load() if load is None else load
            if load is None:
                return None
            return max(1, min(cores, int(cores - load + 0.5)))
        try:
            threads = int(threads)
        except ValueError:
            raise ConfigError(f"{shown('threads')} must be a count or 'auto', got {threads!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"{shown('threads')} must be a count >= 1 or 'auto', got {threads!r}")
    return threads


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (``None``: unchanged); restore afterwards."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
