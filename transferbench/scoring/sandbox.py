"""The sandbox plugin scoring runs in: each indicator's pairs are scored in a forked child process
with a time limit per pair, so no plugin code can hang a run or change the benchmark process.

Stage 4 (scoring), beside the indicator API (`transferbench.scoring.indicator`, whose `checked_score` the
child calls); the process plumbing (dying with the parent, reading with a deadline) is
`transferbench.processes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import warnings
from typing import Sequence

from transferbench.errors import TransferbenchError
from transferbench.processes import die_with_parent, end_of, lines_within, stop
from transferbench.scoring.indicator import Indicator, TaskView, checked_score

# Seconds one `score(source, target)` call may take before the run stops with an error line. Plugins
# are arbitrary code; a hung one should fail clearly rather than stall a benchmark run.
DEFAULT_TIME_LIMIT = 60.0


def score_pairs(indicator: Indicator, pairs: Sequence[tuple[TaskView, TaskView]],
                time_limit: float | None = DEFAULT_TIME_LIMIT) -> list[float]:
    """`checked_score` of every (source, target) pair, in order, each within `time_limit` seconds.

    The pairs are scored in one forked child process, which sends each score (or its one-line
    error) back through a pipe; this process waits at most `time_limit` for each and SIGKILLs the
    child when it is over, so no plugin code (a loop catching BaseException, a blocking C call,
    an ignored signal) can outlast the limit. The child also dies with this process, ignores
    Ctrl-C (this process handles it and kills the child) and shares nothing back but the scores:
    state an indicator keeps between pairs lives for one call of this function. Without
    `os.fork` (Windows) or with `time_limit=None` the pairs run here, without a limit.
    """
    if time_limit is None or not hasattr(os, "fork") or not pairs:
        return [checked_score(indicator, source, target) for source, target in pairs]
    parent = os.getpid()
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns on fork with threads; the child runs no thread's code
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _score_in_child(indicator, pairs, write_end, parent)
    os.close(write_end)
    values: list[float] = []
    try:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            lines = lines_within(pipe, time_limit)
            for source, target in pairs:
                where = f"indicator {indicator.name!r} on pair {source.name} -> {target.name}"
                line = next(lines)
                if line is None:
                    raise TransferbenchError(f"{where} exceeded the time limit of {time_limit:g} s")
                if not line:
                    raise TransferbenchError(f"{where} ended the scoring process ({end_of(pid)})")
                message = json.loads(line)
                if "error" in message:
                    raise TransferbenchError(message["error"])
                values.append(float(message["value"]))
    finally:
        stop(pid)
    return values


def _score_in_child(indicator: Indicator, pairs: Sequence[tuple[TaskView, TaskView]], fd: int,
                    parent: int) -> None:
    status = 0
    try:
        die_with_parent(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the user's Ctrl-C is the parent's to handle
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler: a SIGTERM ends the child at once
        if "torch" in sys.modules:  # torch's OpenMP thread pool does not survive fork: its next op would hang
            sys.modules["torch"].set_num_threads(1)
        with os.fdopen(fd, "wb", buffering=0) as pipe:
            for source, target in pairs:
                try:
                    message = {"value": checked_score(indicator, source, target)}
                except TransferbenchError as exc:
                    message = {"error": str(exc)}
                pipe.write(json.dumps(message).encode() + b"\n")
                if "error" in message:
                    break
    except BaseException:  # noqa: BLE001 -- the parent reports the missing score
        status = 70
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)  # never run the parent's cleanup (atexit, finally blocks up the stack)
