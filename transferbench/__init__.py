"""transferbench: a benchmark and leaderboard for prompt-transferability indicators.

Pipeline (data flows one way): tasks -> source prompts -> artifacts -> indicator scores
-> evaluation -> leaderboard. See README.md.
"""

__version__ = "0.1.0"


def run(*args, **kwargs):
    """Score indicators against a reference and write their result files, from a `RunConfig` or its
    fields: the one orchestration, which `transferbench run` calls; see `transferbench.api.run`
    (imported on first use, so `import transferbench` stays light)."""
    from transferbench.api import run as _run

    return _run(*args, **kwargs)
