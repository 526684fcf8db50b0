"""Stage 5, evaluation: how well an indicator's scores predict the measured transfer.

Input is two square source x target matrices (rows = SOURCE task, columns = TARGET task): the
indicator's scores and the measured transfer. Every metric is computed per target over the sources
s != t, then averaged over targets; the headline is the mean per-target Spearman rho with a
bootstrap confidence interval (the convention of the transferability-estimation literature).

Missing values. The diagonal is ignored. NaN in either matrix means "missing": that (source,
target) pair is dropped for that target only. A target with fewer than `MIN_SOURCES` valid sources,
or whose valid scores or valid transfers are all equal, is *not covered*: all its metrics are NaN,
it is left out of every mean (and of the bootstrap), and it counts against "targets covered".

Ties in the indicator's ranking (for NDCG@k, Regret@k and the top-1 hit) are broken
*pessimistically*: among sources with the same score, the one with the lower measured transfer is
ranked first (then by source name). An indicator thus never gains from ties, and the three
ranking metrics always agree with each other.

Family-aware verdicts. Tasks of one family (e.g. two sentiment tasks) transfer to each other far
better than across families, so an indicator that only detects "same family" already earns a high
mean rho. Given each task's family, `evaluate_indicator` also reports the mean rho over the
target's same-family sources only (within), over other-family sources only (across), the partial
rho with the family indicator controlled, and a permutation p-value against "no information".
Table-level uncertainty of the ranking (a bootstrap over targets and seeds, and the split-seed
check) takes every result of one table at once: `rank_intervals` and `split_seed_tau`.

This module holds the result models and assembles them (`evaluate_target`, `evaluate_indicator`);
the per-target metric formulas are in `transferbench.evaluation.target_metrics`, the table-level verdict
statistics in `transferbench.evaluation.verdict_statistics` (both re-exported here).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from transferbench.errors import TransferbenchError
from transferbench.evaluation.target_metrics import (  # noqa: F401  (re-exported: the metrics' public names)
    MIN_SOURCES, bootstrap_mean_ci, coverage_problem, family_spearman, indicator_order,
    kendall_tau_b, mean_of_defined, ndcg_at_k, partial_spearman, permutation_p_value, regret_at_k, spearman,
    target_spearman, top1_hit, valid_pairs, weighted_tau,
)
from transferbench.evaluation.verdict_statistics import (  # noqa: F401  (re-exported)
    MAX_SEED_SPLITS, paired_test, rank_intervals, seed_splits, split_seed_tau,
)

PER_TARGET_SPEARMAN_METRIC = Path(__file__).parent / "metrics" / "per_target_spearman"
"""The headline as a local `evaluate` module: `evaluate.load(str(PER_TARGET_SPEARMAN_METRIC))`."""


def _none_to_nan(value: Any) -> Any:
    return math.nan if value is None else value


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


# A float that is NaN in Python and null in JSON: "not defined" (e.g. an uncovered target).
Metric = Annotated[
    float,
    BeforeValidator(_none_to_nan),
    PlainSerializer(_nan_to_none, return_type=float | None, when_used="json"),
]


class TargetEvaluation(BaseModel):
    """The metrics of one target task over its sources; all NaN when `covered` is False."""

    model_config = ConfigDict(extra="forbid")

    n_sources: int
    """Sources with both a score and a measured transfer (after dropping NaN pairs)."""
    covered: bool
    reason: str = ""
    """Why the target is not covered; empty when it is."""
    spearman: Metric = math.nan
    kendall: Metric = math.nan
    weighted_tau: Metric = math.nan
    top1_hit: Metric = math.nan
    ndcg: dict[int, Metric] = {}
    regret: dict[int, Metric] = {}
    within_family: Metric = math.nan
    """Spearman rho over the sources of the target's own family (NaN: fewer than MIN_SOURCES)."""
    across_family: Metric = math.nan
    """Spearman rho over the sources of the other families (NaN: fewer than MIN_SOURCES)."""
    partial: Metric = math.nan
    """Spearman partial rho with the same-family indicator controlled (`partial_spearman`)."""


class Evaluation(BaseModel):
    """All metrics of one indicator against one transfer matrix.

    Means are over covered targets. The bootstrap CI is reproducible: `seed` and `n_bootstrap`
    are stored, so anyone can recompute every number from the two matrices.
    """

    model_config = ConfigDict(extra="forbid")

    mean_spearman: Metric
    """Headline: mean over covered targets of the per-target Spearman rho."""
    ci_low: Metric
    ci_high: Metric
    ci_level: float = 0.95
    n_bootstrap: int
    seed: int
    k_values: list[int]
    pooled_spearman: Metric
    """Secondary: Spearman rho over all valid off-diagonal pairs pooled together."""
    top1_rate: Metric
    mean_kendall: Metric
    mean_weighted_tau: Metric
    mean_regret: dict[int, Metric]
    """k -> mean Regret@k (lower is better)."""
    mean_ndcg: dict[int, Metric]
    """k -> mean NDCG@k."""
    n_targets: int
    n_targets_covered: int
    n_pairs: int
    """Valid off-diagonal (source, target) pairs: both matrices have a value."""
    per_target: dict[str, TargetEvaluation]
    within_family_spearman: Metric = math.nan
    """Mean over targets of the rho among same-family sources (targets with >= MIN_SOURCES of
    them); NaN when the file names no families or no target qualifies."""
    n_targets_within_family: int = 0
    across_family_spearman: Metric = math.nan
    """Mean over targets of the rho among other-family sources (>= MIN_SOURCES of them)."""
    n_targets_across_family: int = 0
    partial_spearman: Metric = math.nan
    """Mean over targets of the Spearman partial rho given the same-family indicator."""
    n_permutations: int = 0
    """0: no permutation test (files written before it existed)."""
    permutation_p: Metric = math.nan
    """One-sided p of mean_spearman against "no information" (`permutation_p_value`)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as None); `Evaluation.from_dict` reverses it exactly."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls.model_validate(data)

    def per_target_spearman(self) -> dict[str, float]:
        """Target -> Spearman rho (NaN for uncovered targets); the input of `paired_test`."""
        return {name: target.spearman for name, target in self.per_target.items()}

    def summary(self) -> dict[str, float | int]:
        """The headline numbers as one flat dict, e.g. `mean_regret@1`, `mean_ndcg@3`."""
        flat: dict[str, float | int] = {
            "mean_spearman": self.mean_spearman,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "pooled_spearman": self.pooled_spearman,
            "top1_rate": self.top1_rate,
            "mean_kendall": self.mean_kendall,
            "mean_weighted_tau": self.mean_weighted_tau,
            "within_family_spearman": self.within_family_spearman,
            "across_family_spearman": self.across_family_spearman,
            "partial_spearman": self.partial_spearman,
            "permutation_p": self.permutation_p,
        }
        flat.update({f"mean_regret@{k}": v for k, v in sorted(self.mean_regret.items())})
        flat.update({f"mean_ndcg@{k}": v for k, v in sorted(self.mean_ndcg.items())})
        flat.update(
            n_targets=self.n_targets,
            n_targets_covered=self.n_targets_covered,
            n_pairs=self.n_pairs,
        )
        return flat


# ---------------------------------------------------------------------------------------------
# The formulas, each defined once. All take the valid (non-NaN) values of one target's sources.


def evaluate_target(
    scores: pd.Series,
    transfer: pd.Series,
    k_values: Sequence[int] = (1, 3),
    same_family: pd.Series | None = None,
) -> TargetEvaluation:
    """All metrics of one target; `scores` and `transfer` are indexed by source name and must
    not contain the target itself. `same_family` (bool per source): whether the source shares
    the target's family; without it the family metrics are NaN."""
    s, g = valid_pairs(scores, transfer)
    keep = ~(scores.isna().to_numpy() | transfer.isna().to_numpy())
    names = [str(name) for name in scores.index[keep]]
    family: dict[str, float] = {}
    if same_family is not None:
        z = same_family.to_numpy(dtype=bool)[keep]
        family["within_family"], family["across_family"] = family_spearman(s, g, z)
    problem = coverage_problem(s, g)
    if problem:
        return TargetEvaluation(
            n_sources=len(s),
            covered=False,
            reason=problem,
            ndcg={k: math.nan for k in k_values},
            regret={k: math.nan for k in k_values},
            **family,
        )
    if same_family is not None:
        family["partial"] = partial_spearman(s, g, z)
    return TargetEvaluation(
        n_sources=len(s),
        covered=True,
        spearman=spearman(s, g),
        kendall=kendall_tau_b(s, g),
        weighted_tau=weighted_tau(s, g),
        top1_hit=top1_hit(s, g, names),
        ndcg={k: ndcg_at_k(s, g, names, k) for k in k_values},
        regret={k: regret_at_k(s, g, names, k) for k in k_values},
        **family,
    )


def _checked_matrices(scores: pd.DataFrame, transfer: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate the two matrices and return them as float frames in the same task order."""
    for label, frame in (("scores", scores), ("transfer", transfer)):
        if not isinstance(frame, pd.DataFrame):
            raise TransferbenchError(f"{label} must be a pandas DataFrame, got {type(frame).__name__}")
        if not frame.index.is_unique or not frame.columns.is_unique:
            raise TransferbenchError(f"{label} has duplicate task names; each task must appear once")
        if set(frame.index) != set(frame.columns):
            raise TransferbenchError(
                f"{label} must be square with the same tasks as rows (sources) and columns (targets)"
            )
    if set(scores.index) != set(transfer.index):
        missing = sorted(map(str, set(scores.index) ^ set(transfer.index)))
        raise TransferbenchError(f"scores and transfer cover different tasks: {', '.join(missing)}")
    order = list(scores.index)
    checked = []
    for label, frame in (("scores", scores), ("transfer", transfer)):
        try:
            values = frame.loc[order, order].astype(float)
        except (TypeError, ValueError) as exc:
            raise TransferbenchError(f"{label} must hold numbers or NaN ({exc})") from None
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            i, j = np.argwhere(infinite)[0]
            raise TransferbenchError(
                f"{label} is infinite at source {order[i]!r}, target {order[j]!r}; "
                "use NaN for a missing value"
            )
        checked.append(values)
    return checked[0], checked[1]


def evaluate_indicator(
    scores: pd.DataFrame,
    transfer: pd.DataFrame,
    *,
    n_bootstrap: int = 10000,
    seed: int = 0,
    k_values: Sequence[int] = (1, 3),
    families: Mapping[str, str] | None = None,
    n_permutations: int = 2000,
) -> Evaluation:
    """Score an indicator: per-target metrics, their means over covered targets, the bootstrap
    95% CI of the mean Spearman (targets resampled), the pooled Spearman over all pairs, and the
    permutation p (`permutation_p_value`, seeded with `seed`; `n_permutations` 0 skips it).
    With `families` (task -> family, every task): the within-family, across-family and partial
    rho (`family_spearman`, `partial_spearman`), each averaged over the targets where it is defined.

    `scores` and `transfer` are square frames, rows = source task, columns = target task, with the
    same task names; higher score = more transfer predicted. See the module docstring for how NaN,
    uncovered targets and ties are handled.
    """
    scores, transfer = _checked_matrices(scores, transfer)
    k_values = sorted({int(k) for k in k_values})
    if not k_values or k_values[0] < 1:
        raise TransferbenchError(f"k_values must be positive integers, got {k_values}")
    if n_permutations < 0:
        raise TransferbenchError(f"n_permutations must be 0 (no test) or positive, got {n_permutations}")
    tasks = list(scores.index)
    if families is not None:
        missing = [str(task) for task in tasks if str(task) not in families]
        if missing:
            raise TransferbenchError(f"families names no family for task {missing[0]!r}")
    per_target: dict[str, TargetEvaluation] = {}
    pooled_s: list[np.ndarray] = []
    pooled_g: list[np.ndarray] = []
    for target in tasks:
        sources = [task for task in tasks if task != target]
        s_col, g_col = scores.loc[sources, target], transfer.loc[sources, target]
        same_family = None
        if families is not None:
            same_family = pd.Series(
                [families[str(source)] == families[str(target)] for source in sources], index=sources
            )
        per_target[str(target)] = evaluate_target(s_col, g_col, k_values, same_family)
        s, g = valid_pairs(s_col, g_col)
        pooled_s.append(s)
        pooled_g.append(g)
    all_s, all_g = np.concatenate(pooled_s), np.concatenate(pooled_g)
    pooled = math.nan if coverage_problem(all_s, all_g) else spearman(all_s, all_g)

    covered = [t for t in per_target.values() if t.covered]
    rhos = [t.spearman for t in covered]
    ci_low, ci_high = bootstrap_mean_ci(rhos, n_bootstrap=n_bootstrap, seed=seed)
    covered_pairs = [
        valid_pairs(scores.loc[[s for s in tasks if s != t], t], transfer.loc[[s for s in tasks if s != t], t])
        for t in tasks
        if per_target[str(t)].covered
    ]
    within = [t.within_family for t in per_target.values() if not math.isnan(t.within_family)]
    across = [t.across_family for t in per_target.values() if not math.isnan(t.across_family)]
    return Evaluation(
        mean_spearman=mean_of_defined(rhos),
        ci_low=ci_low,
        ci_high=ci_high,
        n_bootstrap=n_bootstrap,
        seed=seed,
        k_values=k_values,
        pooled_spearman=pooled,
        top1_rate=mean_of_defined(t.top1_hit for t in covered),
        mean_kendall=mean_of_defined(t.kendall for t in covered),
        mean_weighted_tau=mean_of_defined(t.weighted_tau for t in covered),
        mean_regret={k: mean_of_defined(t.regret[k] for t in covered) for k in k_values},
        mean_ndcg={k: mean_of_defined(t.ndcg[k] for t in covered) for k in k_values},
        n_targets=len(tasks),
        n_targets_covered=len(covered),
        n_pairs=int(all_s.size),
        per_target=per_target,
        within_family_spearman=mean_of_defined(within),
        n_targets_within_family=len(within),
        across_family_spearman=mean_of_defined(across),
        n_targets_across_family=len(across),
        partial_spearman=mean_of_defined(t.partial for t in covered),
        n_permutations=n_permutations,
        permutation_p=permutation_p_value(covered_pairs, n_permutations=n_permutations, seed=seed),
    )
