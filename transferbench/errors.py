"""User-facing errors: one clear line naming what is wrong and what to do.

The CLI prints `error: <message>` for these and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class TransferbenchError(Exception):
    """An error caused by the user's input or environment, reported as one line."""


class UnknownNameError(TransferbenchError):
    """A name (task, suite, indicator, backbone) that is not registered."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the command line's handler (`transferbench.cli`): a
    KeyboardInterrupt, so the run stops as on Ctrl-C (every finished artifact is already stored),
    and the CLI exits with status 143 (128 + SIGTERM) instead of 130."""
