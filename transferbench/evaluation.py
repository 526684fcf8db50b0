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
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Iterable, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from scipy import stats

from transferbench.errors import TransferbenchError

MIN_SOURCES = 3
"""A target needs at least this many sources with both a score and a measured transfer."""

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


def spearman(scores: np.ndarray, transfer: np.ndarray) -> float:
    """Spearman rho: the Pearson correlation of the two rank vectors, ties given average ranks.

    The standard score of transferability indicators (e.g. Su et al., NAACL 2022; Agostinelli
    et al., "How stable are transferability metrics evaluations?", ECCV 2022).
    """
    return float(stats.spearmanr(scores, transfer).statistic)


def kendall_tau_b(scores: np.ndarray, transfer: np.ndarray) -> float:
    """Kendall tau-b = (P - Q) / sqrt((P + Q + T_x) * (P + Q + T_y)), P/Q concordant/discordant
    pairs, T_x/T_y pairs tied in one variable only (Kendall, Biometrika 1945)."""
    return float(stats.kendalltau(scores, transfer, variant="b").statistic)


def weighted_tau(scores: np.ndarray, transfer: np.ndarray) -> float:
    """Weighted Kendall tau with scipy's defaults: hyperbolic weight 1/(r+1) on the rank r,
    additive pair weights, averaged over ranking by (scores, transfer) and by (transfer, scores)
    (Vigna, "A weighted correlation index for rankings with ties", WWW 2015). Errors at the top
    of the ranking (the sources one would pick) weigh most (Agostinelli et al., ECCV 2022)."""
    return float(stats.weightedtau(scores, transfer).statistic)


def indicator_order(scores: np.ndarray, transfer: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Source positions in the indicator's order: highest score first; ties broken
    pessimistically (lower measured transfer first), then by source name."""
    return np.array(
        sorted(range(len(scores)), key=lambda i: (-scores[i], transfer[i], names[i])), dtype=int
    )


def ndcg_at_k(scores: np.ndarray, transfer: np.ndarray, names: Sequence[str], k: int) -> float:
    """NDCG@k = DCG@k / IDCG@k (Jarvelin & Kekalainen, TOIS 2002), with linear gain:

        rel_s = (g_s - min_s' g_s') / (max_s' g_s' - min_s' g_s')   (measured transfer min-max
                                                                     scaled to [0, 1] within
                                                                     the target's sources)
        DCG@k = sum_{i=1..k} rel_{pi(i)} / log2(i + 1),  pi = the indicator's order,

    and IDCG@k the same sum over sources sorted by rel. No clipping is needed: rel is in [0, 1].
    The best source has rel 1, so IDCG@k >= 1 whenever the transfer is not constant.
    """
    relevance = (transfer - transfer.min()) / (transfer.max() - transfer.min())
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    chosen = relevance[indicator_order(scores, transfer, names)][:k]
    ideal = np.sort(relevance)[::-1][:k]
    return float((chosen * discount[: len(chosen)]).sum() / (ideal * discount[: len(ideal)]).sum())


def regret_at_k(scores: np.ndarray, transfer: np.ndarray, names: Sequence[str], k: int) -> float:
    """Regret@k = (max_s g_s - max_{s in top-k by indicator} g_s) / |max_s g_s|; 0 is perfect,
    lower is better (Renggli et al., "Which model to transfer?", CVPR 2022 use this form).
    NaN when max_s g_s == 0 (the relative regret is undefined)."""
    best = transfer.max()
    if best == 0:
        return math.nan
    picked = transfer[indicator_order(scores, transfer, names)[:k]].max()
    return float((best - picked) / abs(best))


def top1_hit(scores: np.ndarray, transfer: np.ndarray, names: Sequence[str]) -> float:
    """1 if the indicator's first choice (ties broken pessimistically) has the best measured
    transfer (any source tied for best counts), else 0."""
    first = indicator_order(scores, transfer, names)[0]
    return float(transfer[first] == transfer.max())


def coverage_problem(scores: np.ndarray, transfer: np.ndarray) -> str:
    """Why a target cannot be scored ('' if it can): too few sources or a constant vector,
    for which every correlation is undefined."""
    if len(scores) < MIN_SOURCES:
        return f"{len(scores)} valid sources (need {MIN_SOURCES})"
    if np.ptp(scores) == 0:
        return "indicator scores are constant"
    if np.ptp(transfer) == 0:
        return "measured transfer is constant"
    return ""


def valid_pairs(scores: Iterable[float], transfer: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """The two vectors with every position where either is NaN dropped."""
    s = np.asarray(list(scores), dtype=float)
    g = np.asarray(list(transfer), dtype=float)
    keep = ~(np.isnan(s) | np.isnan(g))
    return s[keep], g[keep]


def target_spearman(scores: Iterable[float], transfer: Iterable[float]) -> float:
    """Spearman rho of one target's sources after the NaN and coverage rules (NaN if uncovered)."""
    s, g = valid_pairs(scores, transfer)
    return math.nan if coverage_problem(s, g) else spearman(s, g)


def evaluate_target(
    scores: pd.Series, transfer: pd.Series, k_values: Sequence[int] = (1, 3)
) -> TargetEvaluation:
    """All metrics of one target; `scores` and `transfer` are indexed by source name and must
    not contain the target itself."""
    s, g = valid_pairs(scores, transfer)
    keep = ~(scores.isna().to_numpy() | transfer.isna().to_numpy())
    names = [str(name) for name in scores.index[keep]]
    problem = coverage_problem(s, g)
    if problem:
        return TargetEvaluation(
            n_sources=len(s),
            covered=False,
            reason=problem,
            ndcg={k: math.nan for k in k_values},
            regret={k: math.nan for k in k_values},
        )
    return TargetEvaluation(
        n_sources=len(s),
        covered=True,
        spearman=spearman(s, g),
        kendall=kendall_tau_b(s, g),
        weighted_tau=weighted_tau(s, g),
        top1_hit=top1_hit(s, g, names),
        ndcg={k: ndcg_at_k(s, g, names, k) for k in k_values},
        regret={k: regret_at_k(s, g, names, k) for k in k_values},
    )


def bootstrap_mean_ci(
    values: Sequence[float], *, n_bootstrap: int = 10000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (Efron & Tibshirani 1993): resample the values (one
    per target) with replacement `n_bootstrap` times with `numpy.random.default_rng(seed)`, and
    take the (1-level)/2 and (1+level)/2 quantiles of the resampled means. NaN if no values."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_bootstrap, data.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def mean_of_defined(values: Iterable[float]) -> float:
    """Mean of the non-NaN values; NaN if there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


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
) -> Evaluation:
    """Score an indicator: per-target metrics, their means over covered targets, the bootstrap
    95% CI of the mean Spearman (targets resampled), and the pooled Spearman over all pairs.

    `scores` and `transfer` are square frames, rows = source task, columns = target task, with the
    same task names; higher score = more transfer predicted. See the module docstring for how NaN,
    uncovered targets and ties are handled.
    """
    scores, transfer = _checked_matrices(scores, transfer)
    k_values = sorted({int(k) for k in k_values})
    if not k_values or k_values[0] < 1:
        raise TransferbenchError(f"k_values must be positive integers, got {k_values}")
    tasks = list(scores.index)
    per_target: dict[str, TargetEvaluation] = {}
    pooled_s: list[np.ndarray] = []
    pooled_g: list[np.ndarray] = []
    for target in tasks:
        sources = [task for task in tasks if task != target]
        s_col, g_col = scores.loc[sources, target], transfer.loc[sources, target]
        per_target[str(target)] = evaluate_target(s_col, g_col, k_values)
        s, g = valid_pairs(s_col, g_col)
        pooled_s.append(s)
        pooled_g.append(g)
    all_s, all_g = np.concatenate(pooled_s), np.concatenate(pooled_g)
    pooled = math.nan if coverage_problem(all_s, all_g) else spearman(all_s, all_g)

    covered = [t for t in per_target.values() if t.covered]
    rhos = [t.spearman for t in covered]
    ci_low, ci_high = bootstrap_mean_ci(rhos, n_bootstrap=n_bootstrap, seed=seed)
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
    )


def paired_test(
    per_target_a: dict[str, float],
    per_target_b: dict[str, float],
    *,
    n_resamples: int = 10000,
    seed: int = 0,
) -> float:
    """Two-sided paired permutation (sign-flip) test of mean_t (a_t - b_t) = 0.

    Over the targets where both values are defined, d_t = a_t - b_t; under the null each d_t is
    equally likely to have either sign (Fisher 1935; Good, "Permutation Tests", 2000). The p-value
    is the share of sign assignments whose |mean| is >= the observed |mean|: exact over all 2^n
    assignments when 2^n <= n_resamples, else Monte Carlo with `default_rng(seed)` and the
    (1 + hits) / (1 + n_resamples) correction. NaN when no target is shared.
    """
    common = sorted(
        t
        for t in set(per_target_a) & set(per_target_b)
        if not (math.isnan(per_target_a[t]) or math.isnan(per_target_b[t]))
    )
    if not common:
        return math.nan
    diffs = np.array([per_target_a[t] - per_target_b[t] for t in common])
    observed = abs(diffs.mean())
    tolerance = 1e-12 * max(1.0, observed)  # equal means must count as "as extreme"
    n = diffs.size
    if 2**n <= n_resamples:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        extreme = np.abs(signs @ diffs / n) >= observed - tolerance
        return float(extreme.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(n_resamples, n))
    hits = int((np.abs(signs @ diffs / n) >= observed - tolerance).sum())
    return (1 + hits) / (1 + n_resamples)
