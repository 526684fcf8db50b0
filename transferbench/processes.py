"""Child processes that never outlive transferbench, and how a parent waits on one.

Used by the data sources (`pip download`) and by plugin scoring (a forked child per indicator,
`transferbench.scoring.sandbox`): if transferbench is killed, even with SIGKILL, which no cleanup code can
catch, its children die too; a parent reads a child's lines with a time limit and kills it when over.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import sys
import time
from typing import Iterator

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _load_prctl():
    """libc's `prctl`, looked up once in the parent (so a forked child only calls it), or None
    where there is none (macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def die_with_parent(parent_pid: int) -> None:
    """In a child process: ask the kernel to SIGKILL this process when its parent dies (Linux
    `PR_SET_PDEATHSIG`, kept across `exec`); elsewhere a no-op.

    `parent_pid` (the parent's pid, read before the fork) closes the race where the parent died
    before the request was made: the child then already has another parent and kills itself.
    """
    if _prctl is None:
        return
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)


def die_with_this_process():
    """A `preexec_fn` for `subprocess`: the started program dies when this process does."""
    parent = os.getpid()
    return lambda: die_with_parent(parent)


def lines_within(pipe, seconds: float) -> Iterator[bytes | None]:
    """Yield each line read from `pipe` (without its newline), waiting at most `seconds` for each:
    None when that time passed, b"" at the end of the stream."""
    buffer = b""
    while True:
        deadline = time.monotonic() + seconds
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([pipe], [], [], remaining)[0]:
                yield None
                return
            chunk = pipe.read(1 << 16)
            if not chunk:
                yield b""
                return
            buffer += chunk
        line, _, buffer = buffer.partition(b"\n")
        yield line


def end_of(pid: int) -> str:
    """How the child `pid` ended, once it has: "exit status N" or "killed by SIGNAME"."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def stop(pid: int) -> None:
    """SIGKILL the child `pid` if it still runs, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
