"""Progress a person can read: per-batch ticks within each stage, with a rate and an ETA, and one line
per stage when it finishes; rich bars on a terminal, plain periodic lines in a log.

Units of work report each batch they finish with `batch_done(examples, train)` and each loop of
batches they start with `loop_started(n)` (`transferbench.model.prompt` does, for training steps and
evaluation batches). These calls are no-ops unless a stage is being reported in this process: units
run by the local executor tick the bar of their stage; units run elsewhere (Ray workers) report only
when they finish.

Work, not unit counts: units of one stage differ in size by orders of magnitude (a zero-shot row
evaluates a dozen prompts on a test split, a probe reads one split once), so the driver gives every
unit its `Work`, the examples the backbone processes in it, and the stage measures progress in
evaluation-example equivalents: a training example (forward + backward) counts as
`ExampleCost.train_weight` evaluation examples (forward only), a ratio measured on this machine
(`transferbench.pipeline.calibration`). The ETA is the work left divided by the rate of work observed so far
(finished units plus the examples the unit in progress has ticked), and before any work has
finished, the work left times the measured cost of an example. A stage started without sizes
counts its units as equal and the batches of the unit in progress as its finished share.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

PROGRESS_MODES = ("auto", "rich", "plain")
PLAIN_INTERVAL_SECONDS = 15.0
"""In plain mode, at most one line per stage every this many seconds (a 30-minute run logs a few KB)."""

_current: _Stage | None = None  # the stage whose units run in this process now, if reported
_reporter: Reporter | None = None  # the reporter of the block running now, if any


@dataclass(frozen=True)
class Work:
    """The size of a unit of work: examples its backbone passes process, by kind of pass."""

    train: int = 0  # training examples (forward + backward), one per example per step
    eval: int = 0  # evaluation examples (forward only): one per example and prompt evaluated

    def __add__(self, other: Work) -> Work:
        return Work(self.train + other.train, self.eval + other.eval)

    def __mul__(self, count: int) -> Work:
        return Work(self.train * count, self.eval * count)

    __rmul__ = __mul__


# What a training example costs in evaluation examples when nothing was measured in this process
# (a `Reporter` used without a `Benchmark`): 657 zero-shot evaluation against 61.3 training
# examples/s, benchmarks/README.md (`benchmarks/speed_vs_peft.py --steps 40`, 2026-11-27).
DEFAULT_TRAIN_WEIGHT = 657 / 61.3


@dataclass(frozen=True)
class ExampleCost:
    """Seconds one example costs on this machine, per kind of pass (`transferbench.pipeline.calibration`)."""

    eval_seconds: float
    train_seconds: float

    @property
    def train_weight(self) -> float:
        """A training example in evaluation examples: the stages' currency of work."""
        return self.train_seconds / self.eval_seconds

    def seconds(self, work: Work) -> float:
        return work.train * self.train_seconds + work.eval * self.eval_seconds


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
    sizes: list[float] = field(default_factory=list)  # each unit's work in evaluation examples; empty: unknown
    cost: ExampleCost | None = None  # measured in this process, for the ETA before any work has finished
    started: float = field(default_factory=lambda: time.monotonic())
    units_done: int = 0
    batches: int = 0
    unit_batches: int = 0  # batches done / announced in the unit in progress
    unit_total: int = 0
    unit_work: float = 0.0  # evaluation examples ticked by the unit in progress
    finished: set[int] = field(default_factory=set)  # indices of the finished units
    finished_work: float = 0.0
    on_tick: Callable[[], None] = lambda: None  # redraws or logs, set by `Reporter.stage`

    @property
    def train_weight(self) -> float:
        return self.cost.train_weight if self.cost is not None else DEFAULT_TRAIN_WEIGHT

    def total_work(self) -> float:
        return sum(self.sizes)

    def work_done(self) -> float:
        """Evaluation examples of the finished units, plus those the unit in progress has ticked
        (at most its size: units run in order in this process, so it is the first unfinished one)."""
        in_progress = next((size for i, size in enumerate(self.sizes) if i not in self.finished), 0.0)
        return self.finished_work + min(self.unit_work, in_progress)

    def fraction(self) -> float:
        total = self.total_work()
        if total > 0:
            return min(1.0, self.work_done() / total)
        within = min(1.0, self.unit_batches / self.unit_total) if self.unit_total else 0.0
        return min(1.0, (self.units_done + within) / self.units) if self.units else 1.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def seconds_left(self) -> float | None:
        """Work left over the observed rate of work; before any work has finished, the work left at
        the measured cost of an example; None when neither is known."""
        total, done = self.total_work(), self.fraction()
        if done > 0:
            return self.elapsed() * (1 - done) / done
        if total > 0 and self.cost is not None:
            return total * self.cost.eval_seconds
        return None

    def eta(self) -> str:
        seconds = self.seconds_left()
        return "ETA –" if seconds is None else f"ETA {_duration(seconds)}"

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

    def unit_finished(self, index: int | None) -> None:
        if index is None or index in self.finished:  # unnamed: the first unfinished one
            index = next((i for i in range(self.units) if i not in self.finished), self.units)
        self.finished.add(index)
        if index < len(self.sizes):
            self.finished_work += self.sizes[index]
        self.units_done += 1
        self.unit_batches = self.unit_total = 0
        self.unit_work = 0.0


def loop_started(batches: int) -> None:
    """A unit running in this process starts a loop of `batches` batches (or training steps)."""
    if _current is not None:
        _current.unit_total += batches


def batch_done(examples: int = 0, train: bool = False) -> None:
    """A unit running in this process finished one batch (or training step) of `examples`
    examples (rows of the backbone's pass), training (forward + backward) or evaluation ones."""
    if _current is not None:
        _current.batches += 1
        _current.unit_batches += 1
        _current.unit_work += examples * (_current.train_weight if train else 1.0)
        _current.on_tick()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Batches run in the block tick no stage (a calibration's timing passes)."""
    global _current
    stage, _current = _current, None
    try:
        yield
    finally:
        _current = stage


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

    def stage(self, description: str, units: int, work: Sequence[Work] | None = None,
              cost: ExampleCost | None = None) -> Callable[..., None]:
        """Start reporting a stage of `units` units, of sizes `work` (one per unit; None: counted as
        equal) and with `cost` the measured cost of an example (for the ETA before any work has
        finished). The returned callable marks one unit finished: `unit_done(index)`, the unit's
        position in `work` (the first unfinished one when not given); the last call prints the
        stage's one finished line."""
        global _current
        stage = _Stage(description, units, cost=cost)
        if work is not None:
            stage.sizes = [w.eval + w.train * stage.train_weight for w in work]
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
            first = f"{description}: {units} unit{'s' if units != 1 else ''} to run"
            if stage.seconds_left() is not None:
                first += f", {stage.eta()} at the rate measured on this machine"
            self._line(first)
        _current = stage

        def unit_done(index: int | None = None) -> None:
            global _current
            stage.unit_finished(index)
            if stage.units_done < units:
                refresh()
                return
            if self._bars is not None and task_id is not None:
                self._bars.remove_task(task_id)
            if _current is stage:
                _current = None
            self._line(stage.summary())

        return unit_done
