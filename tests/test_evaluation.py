"""Stage 5: the metrics of an indicator against measured transfer, on tables with known answers."""

import json
import math
import numpy as np
import pandas as pd
import pytest

from transferbench.errors import TransferbenchError
from transferbench.evaluation.summary import (
    PER_TARGET_SPEARMAN_METRIC,
    Evaluation,
    bootstrap_mean_ci,
    evaluate_indicator,
    ndcg_at_k,
    paired_test,
    partial_spearman,
    permutation_p_value,
    rank_intervals,
    regret_at_k,
    seed_splits,
    split_seed_tau,
    top1_hit,
)

TASKS = ["a", "b", "c", "d", "e", "f"]


def square(values: np.ndarray, tasks=TASKS) -> pd.DataFrame:
    return pd.DataFrame(values, index=tasks, columns=tasks, dtype=float)


def random_transfer(seed: int = 0, tasks=TASKS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return square(rng.uniform(0.2, 1.0, size=(len(tasks), len(tasks))), tasks)


def test_perfect_indicator_scores_one_everywhere():
    transfer = random_transfer()
    result = evaluate_indicator(transfer * 3 + 1, transfer, n_bootstrap=200)
    assert result.mean_spearman == pytest.approx(1.0)
    assert result.ci_low == pytest.approx(1.0) and result.ci_high == pytest.approx(1.0)
    assert result.top1_rate == 1.0
    assert result.mean_regret[1] == 0.0 and result.mean_regret[3] == 0.0
    assert result.mean_ndcg[3] == pytest.approx(1.0)
    assert result.mean_kendall == pytest.approx(1.0)
    assert result.mean_weighted_tau == pytest.approx(1.0)
    assert result.pooled_spearman == pytest.approx(1.0)
    assert (result.n_targets, result.n_targets_covered, result.n_pairs) == (6, 6, 30)


def test_reversed_indicator_scores_minus_one():
    transfer = random_transfer()
    result = evaluate_indicator(-transfer, transfer, n_bootstrap=200)
    assert result.mean_spearman == pytest.approx(-1.0)
    assert result.mean_kendall == pytest.approx(-1.0)
    assert result.top1_rate == 0.0
    assert result.mean_regret[1] > 0
    assert result.mean_ndcg[3] < 1


def test_diagonal_is_ignored():
    transfer = random_transfer()
    scores = transfer.copy()
    for task, value in zip(TASKS, [1e6, -1e6, 5, np.nan, 0, 7]):
        scores.loc[task, task] = value
        transfer.loc[task, task] = np.nan
    result = evaluate_indicator(scores, transfer, n_bootstrap=100)
    assert result.mean_spearman == pytest.approx(1.0)
    assert result.n_pairs == 30


def test_per_target_spearman_matches_an_independent_computation():
    rng = np.random.default_rng(3)
    transfer = random_transfer(1)
    scores = square(np.round(rng.normal(size=(6, 6)), 1))  # rounding creates ties
    scores.loc["a", "c"] = scores.loc["b", "c"]
    result = evaluate_indicator(scores, transfer, n_bootstrap=100)

    def average_ranks(x):
        x = np.asarray(x)
        return np.array([(x < v).sum() + ((x == v).sum() + 1) / 2 for v in x])

    for target in TASKS:
        sources = [s for s in TASKS if s != target]
        rx = average_ranks(scores.loc[sources, target])
        ry = average_ranks(transfer.loc[sources, target])
        expected = np.corrcoef(rx, ry)[0, 1]
        assert result.per_target[target].spearman == pytest.approx(expected)
    manual_mean = np.mean([result.per_target[t].spearman for t in TASKS])
    assert result.mean_spearman == pytest.approx(manual_mean)


def test_nan_pairs_are_dropped_for_that_target_only():
    transfer = random_transfer()
    scores = transfer.copy()
    scores.loc["b", "a"] = np.nan  # target a loses source b
    transfer.loc["c", "a"] = np.nan  # and source c
    transfer.loc["d", "e"] = np.nan  # target e loses source d
    result = evaluate_indicator(scores, transfer, n_bootstrap=100)
    assert result.per_target["a"].n_sources == 3
    assert result.per_target["e"].n_sources == 4
    assert result.per_target["b"].n_sources == 5
    assert result.n_targets_covered == 6
    assert result.n_pairs == 27
    assert result.mean_spearman == pytest.approx(1.0)


def test_too_few_sources_leaves_target_uncovered():
    transfer = random_transfer()
    scores = transfer.copy()
    scores.loc[["b", "c", "d"], "a"] = np.nan  # 2 valid sources left
    scores["b"] = -scores["b"]  # target b is predicted backwards
    result = evaluate_indicator(scores, transfer, n_bootstrap=100)
    a = result.per_target["a"]
    assert not a.covered and a.n_sources == 2 and "need 3" in a.reason
    assert math.isnan(a.spearman) and math.isnan(a.ndcg[3]) and math.isnan(a.top1_hit)
    assert result.n_targets_covered == 5 and result.n_targets == 6
    assert result.mean_spearman == pytest.approx((4 * 1.0 - 1.0) / 5)


def test_constant_indicator_covers_nothing():
    transfer = random_transfer()
    result = evaluate_indicator(square(np.ones((6, 6))), transfer, n_bootstrap=100)
    assert result.n_targets_covered == 0
    assert all(not t.covered and "constant" in t.reason for t in result.per_target.values())
    for value in (result.mean_spearman, result.ci_low, result.ci_high, result.top1_rate,
                  result.pooled_spearman, result.mean_regret[1], result.mean_ndcg[3]):
        assert math.isnan(value)


def test_constant_transfer_for_one_target_leaves_it_uncovered():
    transfer = random_transfer()
    scores = transfer.copy()
    transfer["c"] = 0.5
    result = evaluate_indicator(scores, transfer, n_bootstrap=100)
    assert not result.per_target["c"].covered
    assert result.per_target["c"].reason == "measured transfer is constant"
    assert result.n_targets_covered == 5


def test_ranking_metrics_by_hand():
    names = ["s1", "s2", "s3", "s4"]
    transfer = np.array([0.9, 0.5, 0.7, 0.1])
    scores = np.array([0.2, 0.8, 0.6, 0.1])  # order: s2 (0.5), s3 (0.7), s1 (0.9), s4
    assert top1_hit(scores, transfer, names) == 0.0
    assert regret_at_k(scores, transfer, names, 1) == pytest.approx((0.9 - 0.5) / 0.9)
    assert regret_at_k(scores, transfer, names, 3) == 0.0
    rel = (transfer - 0.1) / 0.8  # [1, .5, .75, 0]
    dcg = 0.5 / np.log2(2) + 0.75 / np.log2(3) + 1.0 / np.log2(4)
    idcg = 1.0 / np.log2(2) + 0.75 / np.log2(3) + 0.5 / np.log2(4)
    assert rel[0] == 1.0
    assert ndcg_at_k(scores, transfer, names, 3) == pytest.approx(dcg / idcg)


def test_ties_in_the_indicators_top_choice_are_broken_pessimistically():
    names = ["s1", "s2", "s3"]
    transfer = np.array([0.9, 0.3, 0.5])
    scores = np.array([1.0, 1.0, 0.0])  # s1 and s2 tie for the top
    assert top1_hit(scores, transfer, names) == 0.0  # s2, the worse of the tied, counts first
    assert regret_at_k(scores, transfer, names, 1) == pytest.approx(0.6 / 0.9)
    assert regret_at_k(scores, transfer, names, 2) == 0.0
    # Reordering the sources does not change the answer.
    assert top1_hit(scores[::-1], transfer[::-1], names[::-1]) == 0.0


def test_ties_in_the_best_transfer_count_as_a_hit():
    names = ["s1", "s2", "s3"]
    assert top1_hit(np.array([0.1, 0.9, 0.5]), np.array([0.8, 0.8, 0.2]), names) == 1.0


def test_regret_uses_the_absolute_best_for_negative_gains():
    names = ["s1", "s2", "s3"]
    transfer = np.array([-0.2, -0.1, -0.4])
    assert regret_at_k(np.array([3.0, 2.0, 1.0]), transfer, names, 1) == pytest.approx(0.1 / 0.1)


def test_bootstrap_ci_is_reproducible_and_contains_the_mean():
    transfer = random_transfer(5, tasks=list("abcdefghij"))
    rng = np.random.default_rng(0)
    scores = transfer + rng.normal(scale=0.2, size=transfer.shape)
    first = evaluate_indicator(scores, transfer, seed=7)
    again = evaluate_indicator(scores, transfer, seed=7)
    other = evaluate_indicator(scores, transfer, seed=8)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.ci_low < first.mean_spearman < first.ci_high
    assert first.n_bootstrap == 10000 and first.seed == 7


def test_bootstrap_of_nothing_is_nan():
    assert all(math.isnan(v) for v in bootstrap_mean_ci([]))


def test_evaluation_round_trips_through_json():
    transfer = random_transfer()
    scores = transfer.copy()
    scores.loc[["b", "c", "d"], "a"] = np.nan
    result = evaluate_indicator(scores, transfer, n_bootstrap=100)
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["per_target"]["a"]["spearman"] is None
    back = Evaluation.from_dict(json.loads(text))
    assert back.to_dict() == result.to_dict()
    assert back.mean_regret.keys() == {1, 3}
    assert math.isnan(back.per_target["a"].spearman)
    assert back.summary()["mean_ndcg@3"] == result.mean_ndcg[3]


def test_mismatched_or_non_square_input_is_a_user_error():
    transfer = random_transfer()
    with pytest.raises(TransferbenchError, match="different tasks"):
        evaluate_indicator(transfer.rename(index={"a": "z"}, columns={"a": "z"}), transfer)
    with pytest.raises(TransferbenchError, match="square"):
        evaluate_indicator(transfer.iloc[:, :5], transfer)
    bad = transfer.copy()
    bad.loc["a", "b"] = np.inf
    with pytest.raises(TransferbenchError, match="infinite at source 'a', target 'b'"):
        evaluate_indicator(bad, transfer)


def test_task_order_does_not_matter():
    transfer = random_transfer()
    scores = transfer + np.random.default_rng(1).normal(scale=0.3, size=transfer.shape)
    shuffled = scores.loc[TASKS[::-1], TASKS[::-1]]
    a = evaluate_indicator(scores, transfer, n_bootstrap=100)
    b = evaluate_indicator(shuffled, transfer, n_bootstrap=100)
    assert a.per_target_spearman() == pytest.approx(b.per_target_spearman())


def test_paired_test_separates_a_better_indicator_from_an_identical_one():
    targets = [f"t{i}" for i in range(20)]
    rng = np.random.default_rng(0)
    good = {t: 0.8 + 0.05 * rng.normal() for t in targets}
    poor = {t: 0.1 + 0.05 * rng.normal() for t in targets}
    assert paired_test(good, poor) < 0.01
    assert paired_test(good, dict(good)) == 1.0
    assert paired_test(good, poor, seed=3) == paired_test(good, poor, seed=3)
    # Small n is enumerated exactly: 6 targets all in one direction -> p = 2 / 2**6.
    few = targets[:6]
    assert paired_test({t: good[t] for t in few}, {t: poor[t] for t in few}) == pytest.approx(2 / 64)


def test_paired_test_uses_only_common_defined_targets():
    a = {"x": 0.5, "y": 0.7, "z": math.nan, "only_a": 1.0}
    b = {"x": 0.5, "y": 0.7, "z": 0.1}
    assert paired_test(a, b) == 1.0
    assert math.isnan(paired_test({"x": 1.0}, {"y": 1.0}))


def test_evaluate_module_loads_offline_and_agrees(monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert (PER_TARGET_SPEARMAN_METRIC / "per_target_spearman.py").is_file()
    metric = evaluate.load(str(PER_TARGET_SPEARMAN_METRIC))
    transfer = random_transfer(2)
    scores = transfer + np.random.default_rng(4).normal(scale=0.3, size=transfer.shape)
    scores.loc["a", "b"] = np.nan
    expected = evaluate_indicator(scores, transfer, n_bootstrap=10)
    predictions, references, targets = [], [], []
    for source in TASKS:
        for target in TASKS:
            if source != target:
                predictions.append(scores.loc[source, target])
                references.append(transfer.loc[source, target])
                targets.append(target)
    out = metric.compute(predictions=predictions, references=references, targets=targets)
    assert out["mean_spearman"] == pytest.approx(expected.mean_spearman, abs=1e-12)
    assert out["per_target"] == pytest.approx(expected.per_target_spearman())
    assert out["n_targets_covered"] == expected.n_targets_covered


# ---------------------------------------------------------------------------------------------
# Family-aware verdicts, permutation test, rank stability: hand-checkable cases.


def test_partial_spearman_known_answers():
    # Ranks s = [4, 3, 2, 1], g = [3, 4, 1, 2]: plain rho = 1 - 6*4/(4*15) = 0.6, but within each
    # family group the order is reversed: residuals (+.5, -.5) vs (-.5, +.5) in both groups -> -1.
    s, g = np.array([4.0, 3, 2, 1]), np.array([3.0, 4, 1, 2])
    assert partial_spearman(s, g, np.array([1, 1, 0, 0])) == pytest.approx(-1.0)
    # Residuals of [1..5] given z = [1,1,1,0,0]: (-1, 0, 1 | -.5, .5); of [2,1,4,3,5]:
    # (-1/3, -4/3, 5/3 | -1, 1); dot = 2 + 1 = 3, norms^2 = 2.5 and 60/9 -> 3 / sqrt(50/3).
    value = partial_spearman(np.arange(1.0, 6), np.array([2.0, 1, 4, 3, 5]), np.array([1, 1, 1, 0, 0]))
    assert value == pytest.approx(3 / math.sqrt(50 / 3))
    # No family split: the plain Spearman rho (0.8 here).
    assert partial_spearman(np.arange(1.0, 6), np.array([2.0, 1, 4, 3, 5]), np.zeros(5)) == pytest.approx(0.8)
    # Scores that are the family indicator itself carry nothing beyond it: undefined.
    assert math.isnan(partial_spearman(np.array([1.0, 1, 0, 0]), s, np.array([1, 1, 0, 0])))


FAMILY_TASKS = ["a", "b", "c", "d", "e", "f"]
FAMILIES = {"a": "A", "b": "A", "c": "A", "d": "A", "e": "B", "f": "B"}


def family_case():
    """transfer = 10 * same family + r_source; scores = 10 * same family - r_source (r = 1..6):
    right about the family, backwards inside each family group."""
    r = {task: i + 1 for i, task in enumerate(FAMILY_TASKS)}
    same = np.array([[FAMILIES[s] == FAMILIES[t] for t in FAMILY_TASKS] for s in FAMILY_TASKS], float)
    rank = np.array([[r[s]] * 6 for s in FAMILY_TASKS], float)
    return square(10 * same - rank, FAMILY_TASKS), square(10 * same + rank, FAMILY_TASKS)


def test_within_across_and_partial_rho_separate_family_detection_from_ranking():
    scores, transfer = family_case()
    result = evaluate_indicator(scores, transfer, families=FAMILIES, n_bootstrap=100)
    # Target a: transfer ranks e1 f2 b3 c4 d5, score ranks f1 e2 d3 c4 b5: sum d^2 = 10,
    # rho = 1 - 60/120 = 0.5 (same for b, c, d); the headline rewards family detection.
    assert result.per_target["a"].spearman == pytest.approx(0.5)
    # Within: a-d have 3 same-family sources, ranked backwards; e, f have 1 (undefined).
    assert result.within_family_spearman == pytest.approx(-1.0)
    assert result.n_targets_within_family == 4
    assert math.isnan(result.per_target["e"].within_family)
    # Across: a-d have only 2 other-family sources (undefined); e, f have 4, ranked backwards.
    assert result.across_family_spearman == pytest.approx(-1.0)
    assert result.n_targets_across_family == 2
    assert math.isnan(result.per_target["a"].across_family)
    assert result.partial_spearman == pytest.approx(-1.0)
    assert result.per_target["e"].partial == pytest.approx(-1.0)


def test_family_metrics_need_families_and_same_family_scores_are_undefined_within():
    scores, transfer = family_case()
    plain = evaluate_indicator(scores, transfer, n_bootstrap=100)
    assert math.isnan(plain.within_family_spearman) and math.isnan(plain.partial_spearman)
    assert plain.n_targets_within_family == 0
    same = square([[float(FAMILIES[s] == FAMILIES[t]) for t in FAMILY_TASKS] for s in FAMILY_TASKS], FAMILY_TASKS)
    result = evaluate_indicator(same, transfer, families=FAMILIES, n_bootstrap=100)
    assert result.mean_spearman > 0.5  # the family alone ranks well ...
    assert math.isnan(result.within_family_spearman)  # ... and says nothing inside a family
    assert math.isnan(result.partial_spearman)
    with pytest.raises(TransferbenchError, match="no family for task 'f'"):
        evaluate_indicator(scores, transfer, families={k: v for k, v in FAMILIES.items() if k != "f"})


def test_permutation_p_known_answers():
    # One target, 3 sources, perfect ranking: 1 of the 3! = 6 orders reaches rho = 1, so p -> 1/6
    # (a two-sided test would give 1/3).
    perfect = (np.array([1.0, 2, 3]), np.array([1.0, 2, 3]))
    assert permutation_p_value([perfect], n_permutations=20000, seed=1) == pytest.approx(1 / 6, abs=0.01)
    # Two such targets: both shuffles must be perfect, 1/36.
    assert permutation_p_value([perfect, perfect], n_permutations=20000) == pytest.approx(1 / 36, abs=0.004)
    # 3 targets of 10 sources ranked perfectly: no shuffle reaches it, p = (1 + 0) / (1 + n).
    ten = (np.arange(10.0), np.arange(10.0))
    assert permutation_p_value([ten] * 3, n_permutations=99) == pytest.approx(1 / 100)
    # Backwards: every shuffle is at least as good, p = 1.
    assert permutation_p_value([(-np.arange(10.0), np.arange(10.0))], n_permutations=99) == 1.0
    assert math.isnan(permutation_p_value([], n_permutations=99))


def test_permutation_p_is_stored_seeded_and_small_for_a_good_indicator():
    transfer = random_transfer()
    good = evaluate_indicator(transfer, transfer, n_bootstrap=100, n_permutations=999)
    assert good.permutation_p == pytest.approx(1 / 1000)
    noisy = transfer + np.random.default_rng(3).normal(scale=2.0, size=transfer.shape)
    first = evaluate_indicator(noisy, transfer, n_bootstrap=100, seed=5, n_permutations=500)
    again = evaluate_indicator(noisy, transfer, n_bootstrap=100, seed=5, n_permutations=500)
    assert first.permutation_p == again.permutation_p and first.n_permutations == 500
    assert math.isnan(evaluate_indicator(noisy, transfer, n_bootstrap=100, n_permutations=0).permutation_p)


SEED_TASKS = ["a", "b", "c", "d", "e"]


def seed_case():
    """Per target, its 4 sources (in task order) get transfer [10, 20, 30, 40] on seed 0 and
    [2, 1, 4, 3] on seed 1; the mean [6, 10.5, 17, 21.5] keeps seed 0's order.
    Indicator A predicts seed 0 (rho 1 on seed 0 and on the mean, 0.6 on seed 1), B predicts
    seed 1 (0.6, 1, and 0.6 on the mean), C is A reversed (always last)."""
    seed0, seed1 = (square(np.full((5, 5), np.nan), SEED_TASKS) for _ in range(2))
    for target in SEED_TASKS:
        sources = [s for s in SEED_TASKS if s != target]
        seed0.loc[sources, target] = [10.0, 20, 30, 40]
        seed1.loc[sources, target] = [2.0, 1, 4, 3]
    return seed0, seed1


def test_rank_intervals_resample_seeds_as_well_as_targets():
    seed0, seed1 = seed_case()
    scores = [seed0, seed1, -seed0]  # A, B, C
    per_seed = [[seed0, seed1]] * 3
    # Seeds drawn {1, 1} (probability 1/4) put B first, else A: both span ranks 1-2.
    assert rank_intervals(scores, per_seed, n_bootstrap=2000) == [(1, 2), (1, 2), (3, 3)]
    # With only the mean transfer (targets alone resampled) the order never changes.
    mean = [[(seed0 + seed1) / 2]] * 3
    assert rank_intervals(scores, mean, n_bootstrap=2000) == [(1, 1), (2, 2), (3, 3)]
    with pytest.raises(TransferbenchError, match="same"):
        rank_intervals(scores, [[seed0, seed1], [seed0], [seed0]])


def test_identical_indicators_share_the_best_rank():
    seed0, seed1 = seed_case()
    assert rank_intervals([seed0, seed0, -seed0], [[seed0, seed1]] * 3, n_bootstrap=200) == [(1, 1), (1, 1), (3, 3)]


def test_split_seed_tau_known_answers():
    seed0, seed1 = seed_case()
    scores = [seed0, seed1, -seed0]
    # Seed 0 alone: means A 1, B 0.6, C -1; seed 1 alone: A 0.6, B 1, C -0.6.
    # Pairs: (A, B) discordant, (A, C) and (B, C) concordant: tau = (2 - 1) / 3.
    tau, n_splits, reason = split_seed_tau(scores, [[seed0, seed1]] * 3)
    assert (tau, n_splits, reason) == (pytest.approx(1 / 3), 1, "")
    # Seeds that agree reproduce the ranking exactly.
    assert split_seed_tau(scores, [[seed0, seed0, seed0]] * 3)[0] == pytest.approx(1.0)
    tau, n_splits, reason = split_seed_tau(scores, [[seed0]] * 3)
    assert math.isnan(tau) and n_splits == 0 and "fewer than 2 seeds" in reason
    assert "fewer than 2 indicators" in split_seed_tau(scores[:1], [[seed0, seed1]])[2]


def test_seed_splits_are_disjoint_halves_each_once():
    assert seed_splits(1) == []
    assert seed_splits(2) == [([0], [1])]
    assert seed_splits(3) == [([0], [1, 2]), ([1], [0, 2]), ([2], [0, 1])]
    assert seed_splits(4) == [([0, 1], [2, 3]), ([0, 2], [1, 3]), ([0, 3], [1, 2])]
    assert len(seed_splits(6)) == 10
