"""Progress of long work, told truthfully on a terminal and in a log file.

Long work is a sequence of *stages* (k-means clustering, encoding the training images,
each candidate's fit, writing a file...). The code doing the work calls a
:class:`Reporter` as it goes::

    with reporting(progress) as report:          # progress: a bool or a Reporter
        for i, batch in enumerate(batches):
            ...
            report("features (ResNet)", i + 1, len(batches), unit="batches")
        report.end()

``report(stage, done, total)`` says that ``done`` of ``total`` units of ``stage`` are
finished (``total`` may be ``None`` when unknown). A call naming another stage ends the
current one, so a finished stage never stands for work that goes on.

- On a terminal every stage gets its own rich bar with the elapsed time and an estimate
  of the time left (a counter when the total is unknown).
- Anywhere else (a log file, ``nohup``, a cluster job) a stage writes one plain line when
  it starts and one when it ends, and within a stage at most one line a minute, with the
  counts, the rate and the time left::

      k-means clustering: started (4,000,000 patches)
      k-means clustering: 1,260,000/4,000,000 patches (21,000/s, about 2 min left)
      k-means clustering: done, 4,000,000 patches in 3 min 10 s (21,000/s)

The library draws on stderr; the CLI uses the same factory, so every bar looks alike. This
module lives outside ``cli/`` because the library must never import the CLI.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["Reporter", "stage_progress", "reporting", "make_progress", "progress_bar", "Advance",
           "format_duration", "format_rate"]

# called with the amount of work just done, and optionally a status text
Advance = Callable[..., None]

#: Seconds between two plain lines within one stage.
LINE_INTERVAL = 60.0


class Reporter:
    """Receives the progress of long work; this base class shows nothing.

    Call it as ``report(stage, done, total, *, unit="", detail="")``: ``done`` of ``total``
    units (``None``: unknown) of ``stage`` are finished; ``detail`` is a short status
    (a loss, the current epoch). :meth:`end` closes the current stage, :meth:`close`
    the reporter (also on leaving a ``with`` block). Calls may come from several threads.
    """

    enabled = False

    def __call__(self, stage: str, done: int, total: int | None = None, *, unit: str = "",
                 detail: str = "") -> None:
        """Record that ``done`` of ``total`` units of ``stage`` are finished."""

    def end(self, stage: str | None = None) -> None:
        """End ``stage`` (by default whichever is current); a later call starts afresh."""

    def close(self) -> None:
        """End the current stage and release the display."""
        self.end()

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Stage:
    """One stage's counts and timings."""

    def __init__(self, name: str, done: int, total: int | None, unit: str, now: float) -> None:
        self.name, self.total, self.unit = name, total, unit
        self.first_done = self.done = done  # a resumed stage counts its rate from where it resumed
        self.started = self.last_line = now

    def rate(self, now: float) -> float | None:
        """Units a second since the stage started (None before two are done: one is no rate)."""
        elapsed = now - self.started
        return (self.done - self.first_done) / elapsed if elapsed > 0 and self.done > self.first_done + 1 else None

    def left(self, now: float) -> float | None:
        rate = self.rate(now)
        if rate is None or self.total is None:
            return None
        return max(self.total - self.done, 0) / rate


class _Tracked(Reporter):
    """Stage bookkeeping shared by the line and bar reporters; subclasses draw."""

    enabled = True

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._stage: _Stage | None = None

    def __call__(self, stage: str, done: int, total: int | None = None, *, unit: str = "",
                 detail: str = "") -> None:
        with self._lock:
            now = self._clock()
            current = self._stage
            if current is None or current.name != stage:
                if current is not None:
                    self._finish(current, now)
                current = self._stage = _Stage(stage, int(done), total, unit, now)
                self._started(current, detail)
                return
            current.done, current.total = int(done), total if total is not None else current.total
            current.unit = unit or current.unit
            self._advanced(current, now, detail)

    def end(self, stage: str | None = None) -> None:
        with self._lock:
            current = self._stage
            if current is not None and (stage is None or stage == current.name):
                self._finish(current, self._clock())
                self._stage = None

    def _started(self, stage: _Stage, detail: str) -> None:
        raise NotImplementedError

    def _advanced(self, stage: _Stage, now: float, detail: str) -> None:
        raise NotImplementedError

    def _finish(self, stage: _Stage, now: float) -> None:
        raise NotImplementedError


class _Lines(_Tracked):
    """Plain lines for logs: a stage's start and end, and at most one line per ``interval``
    seconds within it."""

    def __init__(self, stream: IO[str], clock: Callable[[], float], interval: float) -> None:
        super().__init__(clock)
        self._stream, self._interval = stream, interval

    def _write(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def _started(self, stage: _Stage, detail: str) -> None:
        size = f" ({_count(stage.total, stage.unit)})" if stage.total is not None else ""
        resumed = f", resuming at {stage.done:,}" if stage.done else ""
        self._write(f"{stage.name}: started{size}{resumed}{_detail(detail)}")

    def _advanced(self, stage: _Stage, now: float, detail: str) -> None:
        if now - stage.last_line < self._interval:
            return
        stage.last_line = now
        counts = f"{stage.done:,}" + (f"/{stage.total:,}" if stage.total is not None else "")
        facts = [f"{format_rate(r)}/s" for r in [stage.rate(now)] if r is not None]
        facts += [f"about {format_duration(t)} left" for t in [stage.left(now)] if t is not None]
        self._write(f"{stage.name}: {counts}{' ' + stage.unit if stage.unit else ''}"
                    + (f" ({', '.join(facts)})" if facts else "") + _detail(detail))

    def _finish(self, stage: _Stage, now: float) -> None:
        rate = stage.rate(now)
        self._write(f"{stage.name}: done, {_count(stage.done, stage.unit)} in {format_duration(now - stage.started)}"
                    + (f" ({format_rate(rate)}/s)" if rate is not None else ""))


class _Bars(_Tracked):
    """A rich bar per stage: a new stage adds a new bar, and the finished one says done."""

    def __init__(self, console: "Console", clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self._progress = make_progress(console=console)
        self._task: Any = None
        self._live = False

    def _started(self, stage: _Stage, detail: str) -> None:
        if not self._live:
            self._progress.start()
            self._live = True
        self._task = self._progress.add_task(stage.name, total=stage.total, completed=stage.done,
                                             status=detail)

    def _advanced(self, stage: _Stage, now: float, detail: str) -> None:
        self._progress.update(self._task, completed=stage.done, total=stage.total, status=detail)

    def _finish(self, stage: _Stage, now: float) -> None:
        # A stage that ends short of its estimate (an early stop) still reads as finished.
        self._progress.update(self._task, completed=stage.done, total=max(stage.done, 1), status="done")
        self._progress.stop_task(self._task)

    def close(self) -> None:
        super().close()
        if self._live:
            self._progress.stop()
            self._live = False


def stage_progress(enabled: bool, *, stream: IO[str] | None = None, console: "Console | None" = None,
                   clock: Callable[[], float] = time.monotonic, interval: float = LINE_INTERVAL) -> Reporter:
    """A :class:`Reporter` for long work: bars on a terminal, plain lines elsewhere.

    Parameters
    ----------
    enabled : bool
        ``False`` gives a reporter that shows nothing.
    stream : file, optional
        Where to write (default: ``sys.stderr``). Bars when it is a terminal, else lines.
    console : rich.console.Console, optional
        Draw with this console instead (its ``is_terminal`` decides bars or lines; tests
        force a terminal with ``Console(force_terminal=True)``).
    clock : callable
        Seconds, monotonic (tests pass a fake one).
    interval : float
        Least seconds between two plain lines within a stage (default: a minute).
    """
    if not enabled:
        return Reporter()
    if console is None:
        from rich.console import Console

        console = Console(file=stream if stream is not None else sys.stderr)
    if console.is_terminal:
        return _Bars(console, clock)
    return _Lines(console.file, clock, interval)


@contextlib.contextmanager
def reporting(progress: "bool | Reporter | None") -> Iterator[Reporter]:
    """A reporter for a block of work: ``progress`` itself when it is a :class:`Reporter`
    (its owner closes it), else a new one that this block closes (``True``: shown on
    stderr, ``False``/``None``: silent)."""
    if isinstance(progress, Reporter):
        yield progress
        return
    reporter = stage_progress(bool(progress))
    try:
        yield reporter
    finally:
        reporter.close()


def make_progress(*, transient: bool = False, console: "Console | None" = None) -> "Progress":
    """A rich progress bar on stderr (or ``console``) with the columns used across dmlp-plugin."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console or Console(stderr=True),
        transient=transient,
    )


@contextlib.contextmanager
def progress_bar(enabled: "bool | Reporter", total: int, description: str, *, completed: int = 0,
                 unit: str = "") -> Iterator[Advance | None]:
    """One stage of ``total`` steps while the block runs; yields ``advance(n, status="")``,
    or None when disabled so loops skip the bookkeeping. Bars on a terminal, plain lines
    elsewhere (see :func:`stage_progress`)."""
    if not enabled:
        yield None
        return
    with reporting(enabled) as report:
        done = [completed]
        lock = threading.Lock()

        def advance(n: int, status: str = "") -> None:
            with lock:
                done[0] += n
                count = done[0]
            report(description, count, total, unit=unit, detail=status)

        report(description, completed, total, unit=unit)
        yield advance
        report.end(description)


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 10 s"``, ``"2 h 5 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {secs} s" if secs and minutes < 10 else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def format_rate(rate: float) -> str:
    """A rate, with thousands separators and two significant digits at most for large values
    (``"21,000"``), one decimal below 10 (``"2.5"``)."""
    if rate >= 100:
        digits = len(str(int(rate))) - 2
        return f"{round(rate, -digits):,.0f}"
    return f"{rate:.1f}" if rate < 10 else f"{rate:.0f}"


def _count(n: int | None, unit: str) -> str:
    return f"{n:,}" + (f" {unit}" if unit else "")


def _detail(detail: str) -> str:
    return f"; {detail}" if detail else ""
