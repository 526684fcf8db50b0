"""User-facing errors: one clear line naming what is wrong and what to do.

The CLI prints `error: <message>` for these and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class TransferbenchError(Exception):
    """An error caused by the user's input or environment, reported as one line."""


class UnknownNameError(TransferbenchError):
    """A name (task, suite, indicator, backbone) that is not registered."""
