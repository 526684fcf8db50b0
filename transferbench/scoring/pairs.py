"""An indicator's score for every ordered pair of a benchmark's tasks.

Stage 5 (scoring): asks the pipeline's planner for the artifacts the indicator declares, seals each
task's into a `TaskView` (its declared artifacts only, no path back to the planner), and scores
every pair in the sandbox (`transferbench.scoring.sandbox`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from transferbench.scoring.indicator import Indicator, TaskView
from transferbench.scoring.sandbox import DEFAULT_TIME_LIMIT, score_pairs


def indicator_scores(bench, indicator: Indicator, hidden: Sequence[Path | str] = ()) -> pd.DataFrame:
    """The indicator's score for every ordered pair of distinct tasks of `bench` (a
    `transferbench.pipeline.runner.Benchmark`): rows = source, columns = target, NaN on the diagonal.
    `hidden`: folders hidden from the sealed scoring process besides its own list (a run's output
    folders, wherever they are)."""
    declared = sorted(frozenset(indicator.requires))
    bench.ensure(declared)  # every unit up front, through the executor, with progress
    views = {name: TaskView(name, spec.family, spec.num_classes,
                            {artifact: bench.view(artifact, name) for artifact in declared}, spec.label_names)
             for name, spec in bench.tasks.items()}
    names = list(bench.tasks)
    pairs = [(s, t) for s in names for t in names if s != t]
    values = score_pairs(indicator, [(views[s], views[t]) for s, t in pairs], time_limit=DEFAULT_TIME_LIMIT,
                         hidden=hidden)
    scores = pd.DataFrame(np.nan, index=names, columns=names)
    for (s, t), value in zip(pairs, values, strict=True):
        scores.loc[s, t] = value
    return scores
