"""Protocol v2 of the reference: zero_shot_gain (no per-seed division), margin admission that does
not flip with the bootstrap RNG seed, the power of a table (paired MDD), and v1 bundles deriving
exactly the tables they shipped."""

from __future__ import annotations

import math
import re
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
    assert frequency(borderline, v2) == 0
    assert 0 < frequency(borderline, v1) < 200  # v1's p-value rule flips on the same predictions
    # a target whose lower bound is a hair above the margin is admitted under every RNG seed: no
    # Monte Carlo error reaches v2's rule (its bootstrap-SE draft flipped such a target 8 of 200 times)
    margin = protocol.margin_admission(good, null, labels, 2).advantage_lcb - 1e-6
    assert frequency(good, dict(v2, admission_margin=margin)) == 200


def _bootstrap_se(own, null, labels, k, n_bootstrap, seed):
    weights, draws = protocol.resamples(len(labels), own.shape[0], n_bootstrap, seed)
    boot = protocol.seed_mean(protocol.balanced_accuracy(own, labels, weights, num_classes=k), draws)
    if null is not None:
        boot = boot - protocol.seed_mean(protocol.balanced_accuracy(null, labels, weights, num_classes=k), draws)
    return float(np.std(boot, ddof=1))


@pytest.mark.parametrize("k, null_counts", [(2, True), (3, True), (3, False)])
def test_advantage_se_is_the_bootstrap_se_in_closed_form(k, null_counts):
    """The closed form (`protocol.advantage_se`) against the protocol's own bootstrap at B = 20,000
    (Monte Carlo error ~0.5%; measured ratios 0.997-1.002), on imbalanced classes, seeds that differ and a null prompt that
    agrees with the own prompt on some examples (the paired case the bootstrap shares weights for)."""
    rng = np.random.default_rng(k)
    labels = rng.choice(k, size=300, p=np.linspace(1, 2, k) / np.linspace(1, 2, k).sum())
    own = np.where(rng.random((3, 300)) < [[0.8], [0.7], [0.75]], labels, rng.integers(0, k, (3, 300)))
    null = np.where(rng.random((3, 300)) < 0.5, own, rng.integers(0, k, (3, 300))) if null_counts else None
    closed = protocol.advantage_se(own, null, labels, k)
    assert closed == pytest.approx(_bootstrap_se(own, null, labels, k, 20_000, 1), rel=0.02)


def test_margin_admission_formula():
    labels = np.repeat([0, 1], 50)
    rng = np.random.default_rng(3)
    own = _predictions(rng, labels, [0.80, 0.82, 0.84])
    null = _predictions(rng, labels, [0.60, 0.60, 0.60])
    rule = protocol.margin_admission(own, null, labels, 2, alpha=0.01, margin=0.05)
    assert rule.advantage == pytest.approx(0.22)
    assert rule.advantage_se == pytest.approx(protocol.advantage_se(own, null, labels, 2))
    assert rule.admitted and rule.advantage_lcb == pytest.approx(0.22 - 2.3263479 * rule.advantage_se)
    # the majority class (1/K) counts when the null prompt is below it: the SE is the own prompt's alone
    below = _predictions(rng, labels, [0.30, 0.30, 0.30])
    low = protocol.margin_admission(own, below, labels, 2, margin=0.35)
    assert low.advantage == pytest.approx(0.32) and not low.admitted and "below the margin 0.35" in low.reason
    assert low.advantage_se == pytest.approx(protocol.advantage_se(own, None, labels, 2))


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


# ---- a run, its result files and its board follow the reference's protocol -----------------------
def _cli(capsys, *args):
    from transferbench.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def tiny_v2(tmp_path, cache, tiny_backbone, tiny_suite, capsys, monkeypatch):
    """A protocol-2 reference of the tiny suite built with `reference build --protocol 2`, shipped
    from its own root (`bundle.shipped_root`), and the protocol versions whose artifacts it ensured."""
    root, asked = tmp_path / "refs", []
    artifacts = bundle.protocol_artifacts
    monkeypatch.setattr(bundle, "protocol_artifacts", lambda version=1: asked.append(version) or artifacts(version))
    code, out, err = _cli(capsys, "reference", "build", "--protocol", 2, "--suite", tiny_suite,
                          "--backbone", tiny_backbone, "--root", root, "--unit-threads", 1)
    assert code == 0, err
    assert "with protocol 2 (transfer kinds zero_shot_gain, zero_shot_relative, init_gain)" in out
    assert re.search(r"admitted \d of 4 targets \(excluded: [a-z_, ]+\); measuring transfer from every task "
                     "into the admitted ones", " ".join(err.split())), err
    monkeypatch.setattr(bundle, "shipped_root", lambda: root)
    monkeypatch.chdir(tmp_path)
    return bundle.load_shipped("tiny", str(tiny_backbone), root), asked


def test_reference_build_protocol_2_measures_and_records_v2(tiny_v2, tiny_backbone, tiny_suite, capsys):
    loaded, asked = tiny_v2
    assert set(asked) == {2}  # the estimate and collect: the artifacts of protocol 2's kinds
    assert loaded.info["protocol"] == protocol.PROTOCOLS[2].record and loaded.protocol_version == 2
    assert list(loaded.transfer) == ["zero_shot_gain", "zero_shot_relative", "init_gain"]
    assert "advantage_lcb" in loaded.tasks["pos_a"]  # v2's admission rule
    code, out, err = _cli(capsys, "reference", "verify", "--suite", tiny_suite, "--backbone", tiny_backbone,
                          "--root", loaded.root.parent, "--cells", 0)
    assert code == 0 and "verified" in out, err


def test_a_run_scores_every_kind_of_the_references_protocol_and_the_board_ranks_them(tiny_v2, tiny_backbone,
                                                                                     tiny_suite, capsys, tmp_path):
    from transferbench.evaluation.results import load_results
    from transferbench.leaderboard import build_tables

    loaded, _ = tiny_v2
    code, out, err = _cli(capsys, "run", "--submit", "-i", "random", "--suite", tiny_suite, "--backbone", tiny_backbone)
    assert code == 0, err
    results, problems = load_results(tmp_path / "submissions")
    assert problems == [] and sorted(r.transfer_kind for r in results) == sorted(protocol.PROTOCOLS[2].kinds)
    assert all(r.reference == loaded.hash for r in results)
    notes = {key.transfer_kind: table.attrs["notes"] for key, table in build_tables(results).items()}
    assert any(protocol.TRANSFER_KINDS_V2.get("zero_shot_gain").description in note for note in notes["zero_shot_gain"])
    # a result file of a v1-only kind against this reference is named and left out, the others rank
    import json

    original = next((tmp_path / "submissions").glob("*zero_shot_gain__random*.json"))
    data = json.loads(original.read_text())
    data["transfer_kind"] = "zero_shot"
    (tmp_path / "submissions" / "v1_kind.json").write_text(json.dumps(data))
    results, problems = load_results(tmp_path / "submissions")
    assert len(results) == 3 and [path.name for path, _ in problems] == ["v1_kind.json"]
    assert (f"the shipped reference {loaded.root.name} (protocol 2) has no transfer kind 'zero_shot'; its kinds are "
            "zero_shot_gain, zero_shot_relative, init_gain") in problems[0][1]


def test_a_kind_the_references_protocol_lacks_is_one_line_before_compute(tiny_v2, tiny_backbone, tiny_suite, capsys,
                                                                        tmp_path, monkeypatch):
    from transferbench import api

    loaded, _ = tiny_v2
    monkeypatch.setattr(api, "score", lambda *args, **kwargs: pytest.fail("scored a kind the reference lacks"))
    code, out, err = _cli(capsys, "run", "--submit", "-i", "random", "--transfer", "zero_shot", "--suite", tiny_suite,
                          "--backbone", tiny_backbone)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert (f"transfer kind 'zero_shot' is not one of the shipped reference {loaded.root.name} ({loaded.hash[:12]}), "
            "measured with protocol 2: its kinds are zero_shot_gain, zero_shot_relative, init_gain") in lines[0]
    assert not (tmp_path / "submissions").exists()


def test_kinds_default_to_and_are_checked_against_the_protocol_of_the_scored_reference():
    """`api.scored_kinds` on the shipped v1 reference and on one transferbench measures itself
    (`protocol.BUILD_PROTOCOL`): all = that protocol's kinds; a kind of another protocol only is one line."""
    from types import SimpleNamespace

    from transferbench import api
    from transferbench.errors import TransferbenchError
    from transferbench.run_config import RunConfig

    def config(transfer):
        return RunConfig(indicators=["random"], suite="smoke", transfer=transfer)

    shipped = SimpleNamespace(supplied=bundle.BundleArtifacts(bundle.read_bundle(SHIPPED, None)),
                              suite=SimpleNamespace(name="default"))
    assert api.scored_kinds(shipped, config("all")) == ["zero_shot", "zero_shot_relative", "init_gain"]
    assert api.scored_kinds(shipped, config(["init_gain", "all"])) == ["init_gain", "zero_shot", "zero_shot_relative"]
    with pytest.raises(TransferbenchError, match="transfer kind 'zero_shot_gain' is not one of the shipped reference "
                                                 r"default__minilm \(de1995de793a\), measured with protocol 1: its kinds "
                                                 r"are zero_shot, zero_shot_relative, init_gain \(or all\)$"):
        api.scored_kinds(shipped, config(["init_gain", "zero_shot_gain"]))
    measured = SimpleNamespace(supplied=None, suite=SimpleNamespace(name="tiny"))
    assert api.reference_protocol(measured) is protocol.PROTOCOLS[protocol.BUILD_PROTOCOL]
    assert api.scored_kinds(measured, config("all")) == protocol.PROTOCOLS[protocol.BUILD_PROTOCOL].kinds.names()
    built = protocol.BUILD_PROTOCOL
    other = next(kind for kind in protocol.all_transfer_kinds() if kind not in protocol.PROTOCOLS[built].kinds)
    with pytest.raises(TransferbenchError, match=f"transfer kind '{other}' is not one of the reference of suite "
                                                 f"tiny that transferbench measures, measured with protocol {built}"):
        api.scored_kinds(measured, config(other))


def test_protocol_2_measures_transfer_into_admitted_targets_only(tiny_v2, tiny_backbone, tiny_suite, capsys):
    """Every task is a source; only admitted targets get pair cells (`Protocol.admitted_targets_only`):
    the excluded targets' columns are null, their cells absent, and verify draws from the rest."""
    loaded, _ = tiny_v2
    admitted = [name for name, row in loaded.tasks.items() if row["admitted"]]
    excluded = [name for name in loaded.task_names if name not in admitted]
    assert admitted and excluded  # the tiny backbone admits some, not all (else this proves nothing)
    assert loaded.transfer_targets() == admitted and loaded.info["build"]["transfer_targets"] == "admitted"
    for kind in loaded.transfer:
        means = loaded.transfer[kind]["mean"]
        assert all(means[s][t] is None for s in loaded.task_names for t in excluded)
        assert all(means[s][t] is not None for s in loaded.task_names for t in admitted if s != t)
    cells = [key for key in loaded.predictions if key.startswith(("zero_shot/", "init/"))]
    targets = {key.split("/")[2] for key in cells if key.split("/")[1] != protocol.NULL}
    assert targets == set(admitted)
    # the null prompt's cells on every task stay: admission compares the own prompt with them
    assert {key.split("/")[2] for key in cells if key.startswith(f"zero_shot/{protocol.NULL}/")} == set(loaded.task_names)
    code, out, err = _cli(capsys, "reference", "verify", "--suite", tiny_suite, "--backbone", tiny_backbone,
                          "--root", loaded.root.parent, "--cells", 4)
    assert code == 0 and "verified" in out, err


def test_derive_tables_names_an_admitted_target_without_transfer(tiny_v2):
    from transferbench.errors import TransferbenchError

    loaded, _ = tiny_v2
    target = loaded.transfer_targets()[0]
    predictions = {key: value for key, value in loaded.predictions.items()
                   if not (key.startswith("init/") and key.split("/")[2] == target)}
    with pytest.raises(TransferbenchError, match=f"no transfer into {target}, which the protocol admits"):
        bundle.derive_tables(loaded.info, predictions)
    report, transfer = bundle.derive_tables(loaded.info, predictions, with_transfer=False)
    assert report == loaded.tasks  # admission needs only the own and null prompts' predictions
    assert all(value is None for kind in transfer for row in transfer[kind]["mean"].values() for value in row.values())
    # missing_ok (another protocol's rule re-run on this bundle): that column null, the others as stored
    report, transfer = bundle.derive_tables(loaded.info, predictions, missing_ok=True)
    assert report == loaded.tasks
    for kind, table in transfer.items():
        assert all(table["mean"][source][target] is None for source in loaded.task_names)
        others = [t for t in loaded.transfer_targets() if t != target]
        assert all(table["mean"][s][t] == loaded.transfer[kind]["mean"][s][t] for s in loaded.task_names for t in others)
