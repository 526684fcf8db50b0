"""Protocol v2 of the reference: zero_shot_gain (no per-seed division), margin admission that does
not flip with the bootstrap RNG seed, the power of a table (paired MDD), and v1 bundles deriving
exactly the tables they shipped."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from transferbench.errors import TransferbenchError
from transferbench.evaluation import verdict_statistics as vs
from transferbench.reference import bundle, protocol
from transferbench.reference.protocol import NULL

SHIPPED = Path(__file__).resolve().parents[1] / "reference" / "default__minilm"


def _predictions(rng, labels: np.ndarray, balanced_accuracies) -> np.ndarray:
    """[S, n] binary predictions with exactly the given balanced accuracy per seed (the wrong
    examples of each class chosen at random)."""
    rows = []
    for value in balanced_accuracies:
        row = labels.copy()
        for c in (0, 1):
            index = rng.permutation(np.flatnonzero(labels == c))
            row[index[: len(index) - round(value * len(index))]] = 1 - c
        rows.append(row)
    return np.stack(rows)


# ---- versions and kinds ------------------------------------------------------------------------
def test_v1_bundles_keep_their_kinds_and_v2_has_its_own():
    assert protocol.protocol_of({"protocol": {"n_bootstrap": 10}}).version == 1  # absent: v1
    assert list(protocol.protocol_of({"protocol": {"version": 1}}).kinds) == ["zero_shot", "zero_shot_relative", "init_gain"]
    v2 = protocol.protocol_of({"protocol": {"version": 2}}).kinds
    assert list(v2) == ["zero_shot_gain", "zero_shot_relative", "init_gain"]
    assert "zero_shot_gain" not in protocol.TRANSFER_KINDS  # the CLI, run configs and v1 builds do not see it
    for name in ("zero_shot_relative", "init_gain"):  # a kind name means one formula in every version
        assert v2.get(name) is protocol.TRANSFER_KINDS.get(name)
    assert protocol.transfer_label("zero_shot_gain") == "gain over the untrained prompt (balanced accuracy)"
    assert protocol.measured_cells(version=2) == ["prompts", "zero_shot", "init"]
    assert "version" not in protocol.PROTOCOLS[1].record and protocol.PROTOCOLS[2].record["version"] == 2
    with pytest.raises(TransferbenchError, match="protocol version 3 is not one this transferbench knows"):
        protocol.protocol_of({"protocol": {"version": 3}})


def test_the_shipped_v1_reference_derives_byte_identical_tables():
    shipped = bundle.read_bundle(SHIPPED, None)
    assert "version" not in shipped.info["protocol"]
    tasks, transfer = bundle.derive_tables(shipped.info, shipped.predictions)
    assert bundle._json_bytes(tasks) == (SHIPPED / "tasks.json").read_bytes()
    assert bundle._json_bytes(transfer) == (SHIPPED / "transfer.json").read_bytes()


# ---- stable zero-shot transfer -----------------------------------------------------------------
def _synthetic_bundle(version: int, own_target: list[float]) -> tuple[dict, dict]:
    """Three binary tasks, three seeds, 200 test examples; target `t0`'s own prompt has the per-seed
    balanced accuracies `own_target` against a null prompt at 0.60 on every seed."""
    rng = np.random.default_rng(0)
    names, seeds = ["t0", "t1", "t2"], [0, 1, 2]
    record = dict(protocol.PROTOCOLS[version].record, n_bootstrap=400)
    info = {"tasks": [{"name": n, "family": "f", "classes": 2} for n in names], "seeds": seeds, "protocol": record}
    labels = np.repeat([0, 1], 100)
    predictions: dict[str, np.ndarray] = {}
    for target in names:
        predictions[f"labels/{target}"] = labels
        own = _predictions(rng, labels, own_target if target == "t0" else [0.9, 0.9, 0.9])
        null = _predictions(rng, labels, [0.6, 0.6, 0.6])
        for k, seed in enumerate(seeds):
            predictions[f"own/{target}/{seed}"] = own[k]
            predictions[f"zero_shot/{NULL}/{target}/{seed}"] = null[k]
            predictions[f"init/{NULL}/{target}/{seed}"] = null[k]
        for source in names:
            if source != target:
                transferred = _predictions(rng, labels, [0.63, 0.62, 0.64])
                for k, seed in enumerate(seeds):
                    predictions[f"zero_shot/{source}/{target}/{seed}"] = transferred[k]
                    predictions[f"init/{source}/{target}/{seed}"] = transferred[k]
    return info, predictions


def test_a_tiny_per_seed_gap_explodes_the_v1_cell_se_but_not_v2s():
    own = [0.61, 0.75, 0.76]  # seed 0 beats the null prompt (0.60) by 0.01 only
    _, v1 = bundle.derive_tables(*_synthetic_bundle(1, own))
    tasks, v2 = bundle.derive_tables(*_synthetic_bundle(2, own))
    v1_se = [v1["zero_shot"]["se"][s]["t0"] for s in ("t1", "t2")]
    v2_se = [v2["zero_shot_gain"]["se"][s]["t0"] for s in ("t1", "t2")]
    assert min(v1_se) > 1.0  # larger than the whole 0..1 scale: one resample's gap near 0 dominates
    assert max(v2_se) < 0.06  # a difference of two balanced accuracies on 200 examples
    assert set(v2) == {"zero_shot_gain", "zero_shot_relative", "init_gain"}
    gain = v2["zero_shot_gain"]["mean"]["t1"]["t0"]
    assert gain == pytest.approx(np.mean([0.63, 0.62, 0.64]) - 0.6, abs=1e-9)
    assert "advantage_lcb" in tasks["t0"] and tasks["t1"]["admitted"]


# ---- admission that does not flip ----------------------------------------------------------------
def test_margin_admission_is_stable_across_200_rng_seeds_where_v1_flips():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    null = _predictions(rng, labels, [0.56, 0.56, 0.56])
    v1 = dict(protocol.PROTOCOLS[1].record, n_bootstrap=400)
    v2 = dict(protocol.PROTOCOLS[2].record, n_bootstrap=400)
    good = _predictions(rng, labels, [0.85, 0.86, 0.84])
    chance = _predictions(rng, labels, [0.5, 0.5, 0.5])
    borderline = _predictions(rng, labels, [0.60, 0.69, 0.70])  # like rt_sentiment: p vs null near 0.01
    frequency = lambda own, record: protocol.admission_frequency(own, null, labels, 2, record, 200)  # noqa: E731
    assert frequency(good, v2) == 200
    assert frequency(chance, v2) == 0
    assert frequency(borderline, v2) == 0  # below the margin by far more than the Monte Carlo noise
    assert 0 < frequency(borderline, v1) < 200  # v1's p-value rule flips on the same predictions


def test_margin_admission_formula():
    own, null = np.array([0.80, 0.82, 0.84]), np.array([0.60, 0.60, 0.60])
    boot_own, boot_null = np.array([0.80, 0.84, 0.82, 0.82]), np.array([0.60, 0.62, 0.58, 0.60])
    rule = protocol.margin_admission(own, null, boot_own, boot_null, 2, alpha=0.01, margin=0.05)
    assert rule.advantage == pytest.approx(0.22)
    assert rule.advantage_se == pytest.approx(np.std([0.20, 0.22, 0.24, 0.22], ddof=1))
    assert rule.admitted and rule.advantage_lcb == pytest.approx(0.22 - 2.3263479 * rule.advantage_se)
    # the majority class (1/K) counts when the null prompt is below it
    low = protocol.margin_admission(own, np.full(3, 0.3), boot_own, np.full(4, 0.3), 2, margin=0.35)
    assert low.advantage == pytest.approx(0.32) and not low.admitted and "below the margin 0.35" in low.reason


# ---- power --------------------------------------------------------------------------------------
def test_paired_mdd_is_the_paired_t_test_closed_form():
    from scipy import stats

    a = {f"t{i}": v for i, v in enumerate([0.5, 0.1, 0.4, 0.8, 0.3, 0.6])}
    b = {f"t{i}": v for i, v in enumerate([0.2, 0.3, 0.1, 0.5, 0.4, 0.2])}
    d = np.array([a[t] - b[t] for t in a])
    expected = (stats.t.ppf(0.975, 5) + stats.t.ppf(0.8, 5)) * d.std(ddof=1) / math.sqrt(6)
    assert vs.paired_mdd(a, b) == pytest.approx(expected)
    assert math.isnan(vs.paired_mdd({"x": 0.1, "y": 0.2}, {"x": 0.3, "y": 0.1}))  # fewer than 3 shared
    # with a true difference of the MDD, a paired t-test at alpha 0.05 rejects in about 80% of tables
    rng = np.random.default_rng(0)
    mdd = vs.planned_mdd(20, 11, 0.3)
    rejections = [stats.ttest_1samp(rng.normal(mdd, 0.3 * math.sqrt(2), 20), 0).pvalue < 0.05 for _ in range(4000)]
    assert np.mean(rejections) == pytest.approx(0.8, abs=0.03)


def test_planning_scales_with_targets_and_sources():
    nine = vs.planned_mdd(9, 11, 0.3)
    assert nine == pytest.approx((2.3060 + 0.8889) * 0.3 * math.sqrt(2) / 3, rel=1e-3)  # t quantiles, 8 df
    assert vs.planned_mdd(36, 11, 0.3) == pytest.approx(nine * math.sqrt(9 / 36), rel=0.1)
    # more sources: Spearman's Fisher-z SE shrinks as 1/sqrt(n - 3)
    assert vs.planned_mdd(9, 35, 0.3, rho_sd_sources=11) == pytest.approx(nine * math.sqrt(8 / 32))
    n = vs.targets_for_mdd(0.15, 11, 0.3)
    assert vs.planned_mdd(n, 11, 0.3) <= 0.15 < vs.planned_mdd(n - 1, 11, 0.3)
    with pytest.raises(TransferbenchError, match="at least 2 targets and 4 sources"):
        vs.planned_mdd(1, 11, 0.3)
