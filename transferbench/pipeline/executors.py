"""Executors: where the units of work (`transferbench.pipeline.units`) run.

`Benchmark` builds a list of units (a pure function and its arguments) for what is missing from
its store and hands it to an executor; the executor returns each unit's result to the driver as it
finishes, and the driver writes it to the store. `LocalExecutor` runs units one after another in
this process; `RayExecutor` runs each as a Ray task, on this machine or on a cluster. Workers never
touch the store, so a worker that dies mid-task leaves nothing half-written behind.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import torch

from transferbench.errors import TransferbenchError
from transferbench.registry import Registry


class Unit(NamedTuple):
    """One unit of work: `fn(*args)`, where `fn` is a module-level (picklable) pure function."""

    fn: Callable[..., Any]
    args: tuple


OnResult = Callable[[int, Any], None]


class Executor:
    """Runs units; calls `on_result(index, result)` in the driver as each one finishes.

    `threads_per_unit`: the intra-op PyTorch threads each unit runs with (`UnitContext.threads`).
    """

    threads_per_unit = 1
    registered_name: str | None = None  # set by `EXECUTORS`

    def run(self, units: Sequence[Unit], description: str, on_result: OnResult | None = None) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started (a local Ray instance); a no-op by default."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @classmethod
    def from_options(cls, *, address: str | None, num_cpus: int | None, num_gpus_per_task: float,
                     threads_per_unit: int | None) -> "Executor":
        """Build from the command line's executor options (`--ray-address`, ...), rejecting with
        one TransferbenchError the ones this executor cannot use. Every executor implements it."""
        raise NotImplementedError


class LocalExecutor(Executor):
    """Runs units in order in this process (the default; needs nothing beyond transferbench).

    Each unit uses `threads` PyTorch threads (default: PyTorch's default, one per core).
    """

    def __init__(self, threads: int | None = None):
        self.threads_per_unit = threads or torch.get_num_threads()

    @classmethod
    def from_options(cls, *, address, num_cpus, num_gpus_per_task, threads_per_unit) -> "LocalExecutor":
        if address is not None:
            raise TransferbenchError("--ray-address needs --executor ray")
        return cls(threads=threads_per_unit)

    def __repr__(self) -> str:
        return f"LocalExecutor(threads={self.threads_per_unit!r})"

    def run(self, units: Sequence[Unit], description: str, on_result: OnResult | None = None) -> list[Any]:
        results = []
        for index, unit in enumerate(units):
            results.append(unit.fn(*unit.args))
            if on_result is not None:
                on_result(index, results[-1])
        return results


MISSING_RAY = "--executor ray needs the optional extra: pip install 'transferbench[ray]'"


class RayExecutor(Executor):
    """Runs every unit as a Ray task with declared resources (`num_cpus=1` per task by default;
    a task runs PyTorch on as many threads as it reserves CPUs).

    `address` connects to a running cluster (e.g. "auto" on a node where `ray start` ran); without
    it a local Ray instance with `num_cpus` CPUs (default: all) is started and shut down on
    `close()`. A task whose worker process dies is resubmitted up to `max_retries` times; an
    exception raised by a unit itself is not retried (units are deterministic) and is re-raised here.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, num_gpus_per_task: float = 0,
                 cpus_per_task: int = 1, max_retries: int = 3):
        if cpus_per_task < 1:
            raise TransferbenchError(f"each Ray task needs at least one CPU, got {cpus_per_task}")
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus_per_task = num_gpus_per_task
        self.cpus_per_task = cpus_per_task
        self.max_retries = max_retries
        self.threads_per_unit = cpus_per_task
        self._started = False
        self._remote: dict[Callable, Any] = {}

    @classmethod
    def from_options(cls, *, address, num_cpus, num_gpus_per_task, threads_per_unit) -> "RayExecutor":
        try:
            import ray  # noqa: F401  (fail before any work starts)
        except ImportError:
            raise TransferbenchError(MISSING_RAY) from None
        return cls(address=address, num_cpus=num_cpus, num_gpus_per_task=num_gpus_per_task,
                   cpus_per_task=threads_per_unit or 1)

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus!r}, "
                f"num_gpus_per_task={self.num_gpus_per_task!r}, cpus_per_task={self.cpus_per_task!r}, "
                f"max_retries={self.max_retries!r})")

    def _ray(self):
        try:
            import ray
        except ImportError:
            raise TransferbenchError(MISSING_RAY) from None
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is not None:
                try:
                    ray.init(address=self.address, **options)
                except ConnectionError as exc:
                    raise TransferbenchError(f"could not connect to the Ray cluster at --ray-address {self.address} "
                                             f"({str(exc).splitlines()[0]}); is `ray start` running there?") from None
            else:
                with _keeping_sigterm_handler():
                    ray.init(num_cpus=self.num_cpus, **options)
                self._started = True
        return ray

    def _remote_fn(self, ray, fn: Callable):
        if fn not in self._remote:
            self._remote[fn] = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.num_gpus_per_task,
                                          max_retries=self.max_retries)(fn)
        return self._remote[fn]

    def run(self, units: Sequence[Unit], description: str, on_result: OnResult | None = None) -> list[Any]:
        if not units:
            return []
        ray = self._ray()
        refs = [self._remote_fn(ray, unit.fn).remote(*unit.args) for unit in units]
        position = {ref: index for index, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    result = ray.get(ref)
                except Exception as exc:
                    for other in pending:
                        ray.cancel(other)
                    raise _unwrap(exc, description) from None
                results[position[ref]] = result
                if on_result is not None:
                    on_result(position[ref], result)
        return results

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
        self._remote.clear()


@contextlib.contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
    """A local Ray instance installs its own SIGTERM handler (kill Ray's processes, exit with 1);
    a Python handler installed before (the CLI's, which stops the run as Ctrl-C does, so `close`
    shuts Ray down on the way out) is put back. Without one, Ray's handler stays."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)


def _unwrap(exc: Exception, description: str) -> Exception:
    """A unit's own TransferbenchError stays a one-line error; anything else keeps Ray's report."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, TransferbenchError):
        return cause
    if isinstance(exc, TransferbenchError):
        return exc
    return RuntimeError(f"a Ray task of step {description!r} failed:\n{exc}")


EXECUTORS: Registry[Executor] = Registry("executor", Executor, group="transferbench.executors")
EXECUTORS.add("local", LocalExecutor)
EXECUTORS.add("ray", RayExecutor)


def make_executor(name: str, *, address: str | None = None, num_cpus: int | None = None,
                  num_gpus_per_task: float = 0, threads_per_unit: int | None = None) -> Executor:
    """The executor registered as `name` (`--executor local|ray`, or an installed plugin's)."""
    if threads_per_unit is not None and threads_per_unit < 1:
        raise TransferbenchError(f"--unit-threads must be at least 1, got {threads_per_unit}")
    return EXECUTORS.get(name).from_options(address=address, num_cpus=num_cpus, num_gpus_per_task=num_gpus_per_task,
                                            threads_per_unit=threads_per_unit)
