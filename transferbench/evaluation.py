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
"""

from __future__ import annotations

import itertools
import warnings
import math
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping, Sequence

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


def _standardised_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank) centred to mean 0 and scaled to norm 1, so the
    dot product of two such vectors is their Spearman rho; all zeros when the values are constant."""
    ranks = stats.rankdata(values, axis=-1)
    centred = ranks - ranks.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(centred, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, centred / np.where(norm > 0, norm, 1.0), 0.0)


def partial_spearman(scores: np.ndarray, transfer: np.ndarray, same_family: np.ndarray) -> float:
    """Spearman partial correlation of scores and transfer with the family indicator controlled:

        r_x = average ranks of x;  z_s = 1 if source s shares the target's family else 0
        e_x = r_x - (least-squares fit of r_x on [1, z])  (= r_x minus the mean of r_x in its z group)
        rho_partial = Pearson(e_scores, e_transfer)

    Why: same-family sources transfer best, so a plain rho rewards an indicator that only detects
    the family; the residuals keep only what the scores say *within* each group (a same-family
    indicator's residual scores are all 0). This is the rank version of the first-order partial
    correlation (Fisher 1924; Conover, "Practical Nonparametric Statistics", 1999). When z is
    constant it equals the plain Spearman rho. NaN when either residual vector is all 0.
    """
    group = np.asarray(same_family, dtype=bool)
    residuals = []
    for values in (scores, transfer):
        ranks = stats.rankdata(values)
        fitted = np.empty_like(ranks)
        for member in (True, False):
            if (group == member).any():
                fitted[group == member] = ranks[group == member].mean()
        residuals.append(ranks - fitted)
    e_s, e_g = residuals
    scale = np.linalg.norm(e_s) * np.linalg.norm(e_g)
    if scale <= 1e-12:
        return math.nan
    return float(e_s @ e_g / scale)


def family_spearman(
    scores: np.ndarray, transfer: np.ndarray, same_family: np.ndarray
) -> tuple[float, float]:
    """(within, across): the Spearman rho over the sources that share the target's family, and
    over the sources of other families, each under the coverage rule (NaN with fewer than
    MIN_SOURCES sources or a constant vector).

    Why MIN_SOURCES (3) sources and not more: it is the rule every other per-target rho uses, and
    the smallest sample whose rho is not forced to +-1. In a suite with families of 5, 3, 3 and 1
    tasks only the targets of the 5-task family get a within-family rho (4 same-family sources);
    the count of such targets is reported next to the mean so a reader sees how thin it is.
    """
    group = np.asarray(same_family, dtype=bool)
    return (
        target_spearman(scores[group], transfer[group]),
        target_spearman(scores[~group], transfer[~group]),
    )


def permutation_p_value(
    targets: Sequence[tuple[np.ndarray, np.ndarray]], *, n_permutations: int = 2000, seed: int = 0
) -> float:
    """One-sided permutation test of the mean per-target Spearman rho against "no information".

    Null hypothesis: within each target the indicator's scores are exchangeable over the sources
    (they carry no information about transfer). Each permutation shuffles the scores within every
    target independently (`numpy.random.default_rng(seed)`, targets in the given order) and
    recomputes the mean rho over the same targets;

        p = (1 + #{permutations with mean rho >= observed mean rho}) / (1 + n_permutations)

    (Phipson & Smyth, "Permutation p-values should never be zero", 2010). One-sided because an
    indicator that ranks sources backwards is not "better than chance". `targets` holds the
    (scores, transfer) valid pairs of each covered target. NaN when there are none, or
    n_permutations is 0. Ties keep their average ranks under shuffling, so the rho of a shuffle
    is the dot product of shuffled standardised ranks: the test is exact for ties too.
    """
    if not targets or n_permutations <= 0:
        return math.nan
    rng = np.random.default_rng(seed)
    null = np.zeros(n_permutations)
    observed = 0.0
    for scores, transfer in targets:
        r_s, r_g = _standardised_ranks(scores), _standardised_ranks(transfer)
        observed += float(r_s @ r_g)
        null += rng.permuted(np.tile(r_s, (n_permutations, 1)), axis=1) @ r_g
    observed /= len(targets)
    null /= len(targets)
    hits = int((null >= observed - 1e-9).sum())  # equal means count as "as extreme"
    return (1 + hits) / (1 + n_permutations)


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


# ---------------------------------------------------------------------------------------------
# Table level: how stable is the ranking of the indicators of one table?
#
# Both functions take, per indicator (one result file), its score matrix and its measured transfer
# per seed (`transfer_per_seed[i]` = one source x target frame per seed; the mean over seeds is the
# transfer the file was scored against). All indicators of a table must have the same number of
# seeds. A target's sources are those with a score and a measured transfer (mean over seeds); a
# per-seed value missing for such a pair is filled with that pair's mean over the other seeds.

MAX_SEED_SPLITS = 100
"""`split_seed_tau` averages over at most this many seed splits (the first, in a fixed order)."""


def _per_seed_columns(
    scores: pd.DataFrame, per_seed: Sequence[pd.DataFrame], target: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """(scores, transfer per seed [seeds, sources]) of one target's valid sources, or None when
    the target is not covered (fewer than MIN_SOURCES sources or constant scores)."""
    if target not in scores.columns:
        return None
    sources = [s for s in scores.index if s != target]
    s = scores.loc[sources, target].to_numpy(dtype=float)
    g = np.stack([frame.loc[sources, target].to_numpy(dtype=float) for frame in per_seed])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: the pair is missing
        mean = np.nanmean(g, axis=0)
    keep = ~(np.isnan(s) | np.isnan(mean))
    s, g, mean = s[keep], g[:, keep], mean[keep]
    if len(s) < MIN_SOURCES or np.ptp(s) == 0:
        return None
    g = np.where(np.isnan(g), mean, g)
    return s, g


def _mean_rho_per_seed_weights(
    scores: pd.DataFrame, per_seed: Sequence[pd.DataFrame], targets: Sequence[str], weights: np.ndarray
) -> np.ndarray:
    """rho[b, t]: per target, the Spearman rho of the scores against the transfer averaged over
    seeds with `weights[b]` (rows sum to 1); NaN for uncovered targets or constant transfer."""
    rho = np.full((weights.shape[0], len(targets)), np.nan)
    for j, target in enumerate(targets):
        columns = _per_seed_columns(scores, per_seed, target)
        if columns is None:
            continue
        s, g = columns
        transfer = weights @ g  # [replicates, sources]
        r_g = _standardised_ranks(transfer)
        constant = np.ptp(transfer, axis=1) <= 1e-12 * np.maximum(1.0, np.abs(transfer).max(axis=1))
        rho[:, j] = np.where(constant, np.nan, r_g @ _standardised_ranks(s))
    return rho


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    counts = (~np.isnan(values)).sum(axis=-1)
    sums = np.nansum(values, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _competition_ranks(means: np.ndarray) -> np.ndarray:
    """Rank 1 = highest mean, ties share the best rank, undefined (NaN) means rank last.
    `means` is [indicators, replicates]; returns integer ranks of the same shape."""
    filled = np.where(np.isnan(means), -np.inf, means)
    return 1 + (filled[None, :, :] > filled[:, None, :]).sum(axis=1)


def rank_intervals(
    scores: Sequence[pd.DataFrame],
    transfer_per_seed: Sequence[Sequence[pd.DataFrame]],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[tuple[int, int]]:
    """Each indicator's `level` percentile interval of its rank in a bootstrap over targets AND
    seeds (Efron & Tibshirani 1993; rank intervals as in Goldstein & Spiegelhalter, "League
    tables and their limitations", JRSS A 1996).

    One replicate b (`numpy.random.default_rng(seed)`): draw n_targets targets with replacement
    from the targets of the first indicator's matrix, and n_seeds seed positions with replacement;
    the replicate's transfer is the mean of the drawn seeds' transfer (a seed drawn twice counts
    twice); for every indicator, mean_rho_b = the mean over the drawn targets of the per-target
    Spearman rho against that transfer (undefined targets skipped); the indicators are ranked by
    mean_rho_b (1 = best, ties share the best rank, undefined last). An indicator's interval is
    the (1-level)/2 and (1+level)/2 quantiles of its ranks (values that occurred). Why seeds too:
    the measured transfer is itself a noisy average over prompt-tuning seeds; a rank that flips
    when other seeds are drawn is not established. With one seed (or per-seed transfer unknown,
    pass the mean as the single seed) it is a bootstrap over targets only.
    """
    if not scores:
        return []
    n_seeds = {len(per_seed) for per_seed in transfer_per_seed}
    if len(n_seeds) != 1 or 0 in n_seeds:
        raise TransferbenchError("rank_intervals needs the same (non-zero) number of seeds for every indicator")
    n_seeds_value = n_seeds.pop()
    targets = [str(task) for task in scores[0].columns]
    rng = np.random.default_rng(seed)
    target_draw = rng.integers(0, len(targets), size=(n_bootstrap, len(targets)))
    seed_draw = rng.integers(0, n_seeds_value, size=(n_bootstrap, n_seeds_value))
    weights = (seed_draw[:, :, None] == np.arange(n_seeds_value)).sum(axis=1) / n_seeds_value
    means = np.stack([
        _nanmean_rows(np.take_along_axis(_mean_rho_per_seed_weights(s, g, targets, weights), target_draw, axis=1))
        for s, g in zip(scores, transfer_per_seed)
    ])
    ranks = _competition_ranks(means)
    bounds = np.quantile(ranks, [(1 - level) / 2, (1 + level) / 2], axis=1, method="inverted_cdf")
    return [(int(low), int(high)) for low, high in bounds.T]


def seed_splits(n_seeds: int) -> list[tuple[list[int], list[int]]]:
    """Every split of the seed positions 0..n-1 into two disjoint halves (sizes floor(n/2) and
    ceil(n/2)), each unordered split once, in lexicographic order, at most MAX_SEED_SPLITS.
    3 seeds: [0]|[1, 2], [1]|[0, 2], [2]|[0, 1]; 4 seeds: [0, 1]|[2, 3], [0, 2]|[1, 3], [0, 3]|[1, 2]."""
    if n_seeds < 2:
        return []
    splits = []
    for first in itertools.combinations(range(n_seeds), n_seeds // 2):
        if n_seeds % 2 == 0 and 0 not in first:
            break  # the other half of a split already listed
        splits.append((list(first), [k for k in range(n_seeds) if k not in first]))
        if len(splits) == MAX_SEED_SPLITS:
            break
    return splits


def split_seed_tau(
    scores: Sequence[pd.DataFrame], transfer_per_seed: Sequence[Sequence[pd.DataFrame]]
) -> tuple[float, int, str]:
    """(tau, number of splits, reason): is the indicator ranking reproducible on fresh seeds?

    For each split of the seeds into two disjoint halves A and B (`seed_splits`), every
    indicator's mean per-target Spearman rho is computed against the transfer averaged over A,
    and again over B; tau is Kendall's tau-b between the two vectors of means (i.e. between the
    two rankings of the indicators; indicators undefined in either half left out), averaged over
    the splits where it is defined. 1: both halves rank the indicators identically; near 0: the
    ranking is seed noise. NaN with a reason (instead of a number) when there are fewer than 2
    seeds or 2 indicators, or the seed counts differ.
    """
    if len(scores) < 2:
        return math.nan, 0, "fewer than 2 indicators"
    n_seeds = {len(per_seed) for per_seed in transfer_per_seed}
    if len(n_seeds) != 1:
        return math.nan, 0, "the result files have different numbers of seeds"
    splits = seed_splits(n_seeds.pop())
    if not splits:
        return math.nan, 0, "fewer than 2 seeds with per-seed transfer"
    taus = []
    for half_a, half_b in splits:
        a, b = (
            np.array([
                _mean_rho(s, _seed_mean([per_seed[k] for k in half]))
                for s, per_seed in zip(scores, transfer_per_seed)
            ])
            for half in (half_a, half_b)
        )
        keep = ~(np.isnan(a) | np.isnan(b))
        if keep.sum() >= 2 and np.ptp(a[keep]) > 0 and np.ptp(b[keep]) > 0:
            taus.append(kendall_tau_b(a[keep], b[keep]))
    if not taus:
        return math.nan, len(splits), "no split ranks 2 indicators with defined, distinct means"
    return float(np.mean(taus)), len(splits), ""


def _seed_mean(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Cell-wise mean over seeds, ignoring a seed's missing value (NaN only if all are missing)."""
    stacked = np.stack([frame.to_numpy(dtype=float) for frame in frames])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return pd.DataFrame(np.nanmean(stacked, axis=0), index=frames[0].index, columns=frames[0].columns)


def _mean_rho(scores: pd.DataFrame, transfer: pd.DataFrame) -> float:
    """Mean over targets of `target_spearman` (the headline of `evaluate_indicator`)."""
    return mean_of_defined(
        target_spearman(scores.loc[[s for s in scores.index if s != t], t], transfer.loc[[s for s in scores.index if s != t], t])
        for t in scores.columns
    )
