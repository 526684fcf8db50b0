"""Prompt-tuning seeds: the one reading of a list of seeds, wherever a user gives one.

The `--seeds` flag of `transferbench run` and `transferbench neurons` (text: `0,1,2`), a run
config's `seeds:` field and `transferbench.run(seeds=...)` (lists) all go through `parse_seeds`,
so every entry point refuses the same things with the same words.
"""

from __future__ import annotations

from typing import Any

MAX_SEED = 2**32 - 1  # numpy and torch seeds must fit; larger values overflow deep inside training


def parse_seeds(value: Any) -> list[int]:
    """`value` (text of integers separated by commas, or a list or tuple of integers) as a list of
    seeds. Raises ValueError, with a message that reads after the name of what gave it (`--seeds
    lists a seed twice ...`), for a non-integer, a boolean (`true` is no seed 1), a seed outside 0
    to MAX_SEED, a seed listed twice (each seed is one run) or no seed at all."""
    if isinstance(value, str):
        try:
            seeds: list[Any] = [int(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"takes integers separated by commas, got {value!r}") from None
    elif isinstance(value, (list, tuple)):
        seeds = list(value)
    else:
        raise ValueError(f"takes a list of integers, got {value!r}")
    if any(isinstance(seed, bool) for seed in seeds):
        raise ValueError(f"takes numbers, not true or false, got {value}")
    if any(not isinstance(seed, int) for seed in seeds):
        raise ValueError(f"takes integers, got {value!r}")
    if not seeds:
        raise ValueError(f"needs at least one seed, e.g. 0, got {value!r}")
    if any(not 0 <= seed <= MAX_SEED for seed in seeds):
        raise ValueError(f"takes integers from 0 to {MAX_SEED}, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"lists a seed twice ({seeds}); each seed is one run")
    return seeds
