"""Verdict statistics over a whole table of results: is indicator A better than B (paired test),
how sure is each rank (bootstrap over targets and seeds), and do two halves of the seeds rank
the indicators alike (split-seed Kendall tau); and the same questions for a table pooled over
backbones, each (backbone, target) one unit (with the paired minimum detectable difference).

Stage 5, after `transferbench.evaluation.target_metrics` has scored each result per target.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from transferbench.errors import TransferbenchError
from transferbench.evaluation.target_metrics import MIN_SOURCES, kendall_tau_b, mean_of_defined, standardised_ranks, target_spearman


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
        r_g = standardised_ranks(transfer)
        constant = np.ptp(transfer, axis=1) <= 1e-12 * np.maximum(1.0, np.abs(transfer).max(axis=1))
        rho[:, j] = np.where(constant, np.nan, r_g @ standardised_ranks(s))
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


# ---------------------------------------------------------------------------------------------
# Power: the smallest difference in mean rho between two indicators that a table can detect.


def _mdd_factor(n_targets: int, alpha: float, power: float) -> float:
    """`(t_{1-alpha/2, n-1} + t_{power, n-1}) / sqrt(n)`: the paired t-test's minimum detectable
    difference per unit SD of the per-target differences (the usual closed form, Cohen 1988 ch. 2,
    with t quantiles for n - 1 degrees of freedom)."""
    from scipy import stats

    df = n_targets - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) / math.sqrt(n_targets))


def paired_mdd(per_target_a: dict[str, float], per_target_b: dict[str, float], *,
               alpha: float = 0.05, power: float = 0.8) -> float:
    """Paired minimum detectable difference in mean rho between two indicators of one table:
    over the targets where both per-target Spearman rho values are defined, d_t = a_t - b_t, and
    MDD = (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd(d) / sqrt(n) (two-sided alpha, sd with ddof 1).
    A true difference in mean rho smaller than this is found by a paired test less often than
    `power`. NaN with fewer than 3 shared targets."""
    common = sorted(t for t in set(per_target_a) & set(per_target_b)
                    if not (math.isnan(per_target_a[t]) or math.isnan(per_target_b[t])))
    if len(common) < 3:
        return math.nan
    diffs = np.array([per_target_a[t] - per_target_b[t] for t in common])
    return float(np.std(diffs, ddof=1)) * _mdd_factor(len(common), alpha, power)


def planned_mdd(n_targets: int, n_sources: int, rho_sd: float, *, rho_sd_sources: int | None = None,
                correlation: float = 0.0, alpha: float = 0.05, power: float = 0.8) -> float:
    """The paired MDD (`paired_mdd`) a table of `n_targets` admitted targets with `n_sources`
    sources each would have, when each indicator's per-target Spearman rho has sampling SD
    `rho_sd`, measured at `rho_sd_sources` sources (default `n_sources`).

    The SD is carried to `n_sources` by the Fisher-z standard error of Spearman's rho, which
    shrinks as 1/sqrt(n - 3) (Bonett & Wright 2000), and two indicators' errors, correlated by
    `correlation`, give sd(d) = rho_sd * sqrt(2 (1 - correlation)). This treats all of sd(d) as
    sampling noise over sources; real differences between targets do not shrink with more
    sources, so with them the figure is optimistic (rescale nothing, `rho_sd_sources=None`, for
    the conservative one)."""
    if n_targets < 2 or n_sources < 4:
        raise TransferbenchError(f"planned_mdd needs at least 2 targets and 4 sources, got {n_targets} and {n_sources}")
    measured = n_sources if rho_sd_sources is None else rho_sd_sources
    sd = rho_sd * math.sqrt((measured - 3) / (n_sources - 3)) * math.sqrt(2 * (1 - correlation))
    return sd * _mdd_factor(n_targets, alpha, power)


def targets_for_mdd(goal: float, n_sources: int | Callable[[int], int], rho_sd: float, *,
                    rho_sd_sources: int | None = None, correlation: float = 0.0, alpha: float = 0.05,
                    power: float = 0.8, most: int = 10000) -> int:
    """The fewest admitted targets whose `planned_mdd` is at most `goal`; `n_sources` may be a
    function of the number of targets (every task of a suite is a source, so sources grow with
    targets). TransferbenchError if even `most` targets do not reach it."""
    for n in range(3, most + 1):
        sources = n_sources(n) if callable(n_sources) else n_sources
        if sources >= 4 and planned_mdd(n, sources, rho_sd, rho_sd_sources=rho_sd_sources, correlation=correlation,
                       alpha=alpha, power=power) <= goal:
            return n
    raise TransferbenchError(f"no table of up to {most} targets reaches an MDD of {goal}")


# Pooled across backbones: each (backbone, target) is one unit.
#
# A suite shipped with references on several backbones gives several small tables; pooling their
# targets as units lets evidence add up. The bootstrap is stratified by backbone: each replicate
# draws, per backbone, as many of its targets as it has (with replacement) and its own seeds
# (a backbone's prompt-tuning seeds are its own runs), so every replicate keeps each backbone's
# share of the units fixed, as the design fixed it, instead of sometimes dropping a backbone.


def pooled_rank_intervals(
    strata: Sequence[Sequence[tuple[pd.DataFrame, Sequence[pd.DataFrame]] | None]],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[list[tuple[int, int]], list[tuple[float, float]]]:
    """(rank interval, CI of the pooled mean rho) of each indicator, pooled over backbones.

    `strata[k][i]`: indicator i on backbone k as (score matrix, transfer per seed), or None when
    the indicator has no result there (its units on that backbone are then undefined and skipped).
    Within a stratum every indicator has the same number of seeds (as in `rank_intervals`); the
    units of stratum k are the targets of its first indicator's matrix. One replicate b
    (`numpy.random.default_rng(seed)`, strata in order, targets then seeds): per stratum, draw its
    n_k targets and its seed positions with replacement; an indicator's pooled mean_b is the mean
    of its defined per-unit rho over all drawn units of all strata. Ranks as in `rank_intervals`
    (1 = best, ties share the best rank, undefined last); the CI is the percentile interval of
    mean_b (NaN when undefined in more than half the replicates).
    """
    if not strata or not strata[0]:
        return [], []
    n_indicators = len(strata[0])
    if any(len(stratum) != n_indicators for stratum in strata):
        raise TransferbenchError("pooled_rank_intervals needs one entry (or None) per indicator in every stratum")
    rng = np.random.default_rng(seed)
    pooled: list[list[np.ndarray]] = [[] for _ in range(n_indicators)]
    for stratum in strata:
        present = [entry for entry in stratum if entry is not None]
        if not present:
            continue
        n_seeds = {len(per_seed) for _, per_seed in present}
        if len(n_seeds) != 1 or 0 in n_seeds:
            raise TransferbenchError("pooled_rank_intervals needs the same (non-zero) number of seeds for every "
                                     "indicator of a backbone")
        n_seeds_value = n_seeds.pop()
        targets = [str(task) for task in present[0][0].columns]
        target_draw = rng.integers(0, len(targets), size=(n_bootstrap, len(targets)))
        seed_draw = rng.integers(0, n_seeds_value, size=(n_bootstrap, n_seeds_value))
        weights = (seed_draw[:, :, None] == np.arange(n_seeds_value)).sum(axis=1) / n_seeds_value
        for i, entry in enumerate(stratum):
            if entry is None:
                pooled[i].append(np.full((n_bootstrap, len(targets)), np.nan))
                continue
            rho = _mean_rho_per_seed_weights(entry[0], entry[1], targets, weights)
            pooled[i].append(np.take_along_axis(rho, target_draw, axis=1))
    means = np.stack([_nanmean_rows(np.concatenate(parts, axis=1)) for parts in pooled])
    ranks = _competition_ranks(means)
    bounds = np.quantile(ranks, [(1 - level) / 2, (1 + level) / 2], axis=1, method="inverted_cdf")
    intervals = [(int(low), int(high)) for low, high in bounds.T]
    cis = []
    for row in means:
        defined = row[~np.isnan(row)]
        if defined.size * 2 < row.size:
            cis.append((math.nan, math.nan))
        else:
            low, high = np.quantile(defined, [(1 - level) / 2, (1 + level) / 2])
            cis.append((float(low), float(high)))
    return intervals, cis
