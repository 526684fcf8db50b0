"""Per-target metrics: how one indicator's scores over the sources of one target agree with the
measured transfer (Spearman, Kendall tau-b, weighted tau, NDCG@k, Regret@k, top-1 hit, the
family-aware rho and permutation p-value), and the mean with a bootstrap CI over targets.

The conventions (missing values, coverage, pessimistic ties) are stated in
`transferbench.evaluation.summary`, which assembles these into one `Evaluation` per result file.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

MIN_SOURCES = 3
"""A target needs at least this many sources with both a score and a measured transfer."""


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


def standardised_ranks(values: np.ndarray) -> np.ndarray:
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
        r_s, r_g = standardised_ranks(scores), standardised_ranks(transfer)
        observed += float(r_s @ r_g)
        null += rng.permuted(np.tile(r_s, (n_permutations, 1)), axis=1) @ r_g
    observed /= len(targets)
    null /= len(targets)
    hits = int((null >= observed - 1e-9).sum())  # equal means count as "as extreme"
    return (1 + hits) / (1 + n_permutations)


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
