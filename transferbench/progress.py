"""Progress a person can read: per-batch ticks within each stage, with a rate and an ETA, and one line
per stage when it finishes; rich bars on a terminal, plain periodic lines in a log.

Units of work report each batch they finish with `batch_done()` and each loop of batches they
start with `loop_started(n)` (`transferbench.prompt` does, for training steps and evaluation
batches). These calls are no-ops unless a stage is being reported in this process: units run by
the local executor tick the bar of their stage; units run elsewhere (Ray workers) report only when
they finish.

The ETA of a stage is its elapsed time scaled by the fraction left, where the fraction done counts
finished units plus the finished share of the batches of the unit in progress. Units of one stage
are of similar size (one task, one seed), so the estimate is rough but honest after the first unit.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

PROGRESS_MODES = ("auto", "rich", "plain")
PLAIN_INTERVAL_SECONDS = 15.0
"""In plain mode, at most one line per stage every this many seconds (a 30-minute run logs a few KB)."""

_current: _Stage | None = None  # the stage whose units run in this process now, if reported
_reporter: Reporter | None = None  # the reporter of the block running now, if any


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class _Stage:
    description: str
    units: int
    started: float = field(default_factory=lambda: time.monotonic())
    units_done: int = 0
    batches: int = 0
    unit_batches: int = 0  # batches done / announced in the unit in progress
    unit_total: int = 0
    on_tick: Callable[[], None] = lambda: None  # redraws or logs, set by `Reporter.stage`

    def fraction(self) -> float:
        within = min(1.0, self.unit_batches / self.unit_total) if self.unit_total else 0.0
        return min(1.0, (self.units_done + within) / self.units) if self.units else 1.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self) -> str:
        done = self.fraction()
        if done <= 0:
            return "ETA –"
        return f"ETA {_duration(self.elapsed() * (1 - done) / done)}"

    def rate(self) -> str:
        elapsed = max(self.elapsed(), 1e-9)
        if self.batches:
            return f"{self.batches} batches, {self.batches / elapsed:.1f}/s"
        return f"{self.units_done / elapsed * 60:.1f} units/min"

    def status(self) -> str:
        return f"{self.units_done}/{self.units} units · {self.rate()} · {_duration(self.elapsed())} · {self.eta()}"

    def summary(self) -> str:
        what = f"{self.units} unit{'s' if self.units != 1 else ''}"
        if self.batches:
            what += f", {self.batches} batches ({self.batches / max(self.elapsed(), 1e-9):.1f}/s)"
        return f"done: {self.description}: {what} in {_duration(self.elapsed())}"


def loop_started(batches: int) -> None:
    """A unit running in this process starts a loop of `batches` batches (or training steps)."""
    if _current is not None:
        _current.unit_total += batches


def batch_done() -> None:
    """A unit running in this process finished one batch (or training step)."""
    if _current is not None:
        _current.batches += 1
        _current.unit_batches += 1
        _current.on_tick()


def note(text: str) -> None:
    """One line about something slow outside the stages (e.g. a download), printed above the bars
    when a reporter is active, else on standard error."""
    if _reporter is not None:
        _reporter._line(text)
    else:
        Console(stderr=True, markup=False).print(text, markup=False, highlight=False, soft_wrap=True)


def resolve_mode(mode: str, console: Console) -> str:
    """`auto` is rich bars when the console is a terminal, plain lines otherwise."""
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress mode {mode!r}; use one of {', '.join(PROGRESS_MODES)}")
    if mode == "auto":
        return "rich" if console.is_terminal else "plain"
    return mode


class Reporter:
    """Reports the stages run inside `reporting()`: `stage(description, units)` returns the callable
    to call as each unit finishes."""

    def __init__(self, console: Console | None = None, mode: str = "auto",
                 interval: float = PLAIN_INTERVAL_SECONDS):
        self.console = console or Console(stderr=True, markup=False)
        self.mode = resolve_mode(mode, self.console)
        self.interval = interval
        self._bars: Progress | None = None

    @contextlib.contextmanager
    def reporting(self) -> Iterator[Reporter]:
        global _current, _reporter
        _reporter = self
        try:
            if self.mode == "plain":
                yield self
                return
            columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"))
            with Progress(*columns, console=self.console, transient=True) as bars:
                self._bars = bars
                yield self
        finally:
            self._bars = None
            _current = _reporter = None  # a stage that failed stops ticking

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        if self.mode == "plain":
            with contextlib.suppress(AttributeError, ValueError, OSError):
                self.console.file.flush()

    def stage(self, description: str, units: int) -> Callable[[], None]:
        """Start reporting a stage of `units` units; the returned callable marks one unit finished
        (the last call prints the stage's one finished line)."""
        global _current
        stage = _Stage(description, units)
        task_id = self._bars.add_task(description, total=units, status=stage.status()) if self._bars else None
        last_line = [time.monotonic()]

        def refresh(force: bool = False) -> None:
            if self._bars is not None and task_id is not None:
                self._bars.update(task_id, completed=stage.fraction() * units, status=stage.status())
            elif force or time.monotonic() - last_line[0] >= self.interval:
                last_line[0] = time.monotonic()
                self._line(f"{description}: {stage.status()}")

        stage.on_tick = refresh
        if self._bars is None:
            self._line(f"{description}: {units} unit{'s' if units != 1 else ''} to run")
        _current = stage

        def unit_done() -> None:
            global _current
            stage.units_done += 1
            stage.unit_batches = stage.unit_total = 0
            if stage.units_done < units:
                refresh()
                return
            if self._bars is not None and task_id is not None:
                self._bars.remove_task(task_id)
            if _current is stage:
                _current = None
            self._line(stage.summary())

        return unit_done

