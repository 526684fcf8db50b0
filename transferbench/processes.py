"""Child processes that never outlive transferbench.

Used by the data sources (`pip download`) and by the sealed scoring process
(`transferbench.scoring.sandbox_child`): if transferbench is killed, even with SIGKILL, which no cleanup
code can catch, its children die too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

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
