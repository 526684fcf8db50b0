"""The reference ground truth: protocol formulas, the bundle, verification, tampering, and scoring
against a shipped reference without training anything."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from transferbench.reference import protocol, bundle as reference, verify

from transferbench.cli import main
from transferbench.pipeline import units


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---- formulas --------------------------------------------------------------------------------
def test_balanced_accuracy_known_values_and_constant_prediction_scores_one_over_k():
    labels = np.array([0, 0, 0, 1])
    # recall of class 0 = 2/3, of class 1 = 1/1 -> (2/3 + 1) / 2
    assert protocol.balanced_accuracy(np.array([0, 0, 1, 1]), labels) == pytest.approx(5 / 6)
    for constant in (0, 1):
        assert protocol.balanced_accuracy(np.full(4, constant), labels) == pytest.approx(0.5)
    three = np.array([0, 1, 2, 2])
    assert protocol.balanced_accuracy(np.zeros(4, dtype=int), three, num_classes=3) == pytest.approx(1 / 3)


def test_balanced_accuracy_with_bootstrap_weights_equals_the_resampled_examples():
    rng = np.random.default_rng(1)
    labels, predictions = rng.integers(0, 3, 50), rng.integers(0, 3, (2, 50))
    weights, _ = protocol.resamples(50, 2, n_bootstrap=5, seed=3)
    fast = protocol.balanced_accuracy(predictions, labels, weights, num_classes=3)  # [5, 2]
    for b in range(5):
        index = np.repeat(np.arange(50), weights[b].astype(int))
        for s in range(2):
            assert fast[b, s] == pytest.approx(protocol.balanced_accuracy(predictions[s, index], labels[index]))


def test_normalised_transfer_and_relative_performance():
    assert protocol.normalised_transfer(np.array(0.7), np.array(0.9), np.array(0.5)) == pytest.approx(0.5)
    assert protocol.normalised_transfer(np.array(0.5), np.array(0.9), np.array(0.5)) == pytest.approx(0.0)
    assert np.isnan(protocol.normalised_transfer(np.array(0.7), np.array(0.5), np.array(0.5)))  # own == null
    assert protocol.relative_performance(np.array(0.6), np.array(0.8)) == pytest.approx(0.75)


def test_one_sided_p_and_admission():
    assert protocol.one_sided_p(np.full(99, 1.0)) == pytest.approx(0.01)
    assert protocol.one_sided_p(np.full(99, -1.0)) == pytest.approx(1.0)
    good = np.full(500, 0.8)
    admitted, p_majority, p_null, reason = protocol.admission(good, np.full(500, 0.6), num_classes=2)
    assert admitted and p_majority < 0.01 and p_null < 0.01 and reason == ""
    admitted, _, p_null, reason = protocol.admission(good, np.full(500, 0.85), num_classes=2)
    assert not admitted and p_null == 1.0 and "null prompt" in reason


def test_near_admission_threshold_is_within_a_factor_of_two_of_alpha():
    assert [protocol.near_admission_threshold(p, 0.01) for p in (0.0005, 0.0049, 0.005, 0.0095, 0.0199, 0.02)] == [
        False, False, True, True, True, False]


def test_shipped_task_report_shows_admission_p_values_and_the_targets_near_the_threshold(capsys):
    code, out, err = run_cli(capsys, "reference", "show", "--suite", "default", "--backbone", "minilm")
    assert code == 0, err
    assert "p > null" in out and "0.0095!" in out  # rt_sentiment's own prompt vs the null prompt
    near = next(line for line in out.splitlines() if "near the threshold" in line)
    # p vs null 0.0095 and 0.0080 (admitted), snli's p vs majority 0.018 (excluded); the rest are far
    assert near.endswith("can admit or exclude them")
    assert all(task in near for task in ("rt_sentiment", "snli", "bbc_sport_vs_business"))
    assert not any(task in near for task in ("vader_amazon", "bbc_topic", "snli_entailment"))


def test_v2_task_report_shows_the_margin_rule_not_p_values(capsys):
    """A protocol-2 bundle is admitted by `protocol.margin_admission`: its report shows the
    advantage and its lower bound, and a legend that states the margin, not v1's p-value rule."""
    code, out, err = run_cli(capsys, "reference", "show", "--suite", "default_v2", "--backbone", "splade-tiny")
    assert code == 0, err
    assert "99% lower bound" in out and "p > null" not in out and "near the threshold" not in out
    legend = next(line for line in out.splitlines() if line.startswith("admitted:"))
    assert "lower bound of at least 0.05" in legend and "p <" not in legend
    # bbc_sport_vs_business: advantage 0.150 over the null prompt, but its lower bound is below the margin
    row = next(line for line in out.splitlines() if "bbc_sport_vs_business" in line)
    assert "0.150" in row and "-0.023" in row and "no:" in row


def test_estimate_one_seed_has_nan_std_never_zero():
    weights, seeds = protocol.resamples(10, 1, n_bootstrap=20)
    cell = protocol.estimate(np.array([0.3]), np.full((20, 1), 0.3), seeds)
    assert np.isnan(cell.std_over_seeds) and cell.mean == pytest.approx(0.3)


# ---- a bundle on the tiny backbone -------------------------------------------------------------
@pytest.fixture()
def built(tmp_path, cache, tiny_backbone, tiny_suite, capsys):
    """A reference of the tiny suite built with the CLI into its own root folder."""
    root = tmp_path / "refs"
    code, out, err = run_cli(capsys, "reference", "build", "--suite", tiny_suite, "--backbone", tiny_backbone,
                             "--root", root)
    assert code == 0, err
    folder = root / reference.bundle_name("tiny", str(tiny_backbone))
    return root, folder


def test_built_bundle_has_every_file_and_verifies(built, tiny_backbone, tiny_suite, capsys):
    root, folder = built
    assert sorted(p.name for p in folder.iterdir()) == sorted([*reference.FILES, "MANIFEST.json"])
    loaded = reference.load_shipped("tiny", str(tiny_backbone), root)
    assert loaded.hash == json.loads((root / "index.json").read_text())[folder.name]
    assert set(loaded.transfer) == set(protocol.TRANSFER_KINDS)
    assert {"own_balanced_accuracy", "null_balanced_accuracy", "probe_balanced_accuracy", "admitted"} <= set(
        loaded.tasks["pos_a"])
    # per-cell uncertainty and per-example predictions of every cell
    assert loaded.transfer["init_gain"]["se"]["pos_a"]["pos_b"] is not None
    assert loaded.predictions["zero_shot/(null)/pos_a/0"].shape == loaded.predictions["labels/pos_a"].shape
    code, out, err = run_cli(capsys, "reference", "verify", "--suite", tiny_suite, "--backbone", tiny_backbone,
                             "--root", root, "--cells", 4)
    assert code == 0, err
    assert "verified" in out and "agreement" in out


@pytest.mark.parametrize("name", [*reference.FILES, "MANIFEST.json"])
def test_flipping_one_byte_of_any_file_fails_verify_naming_the_file(built, tiny_backbone, tiny_suite, capsys, name):
    root, folder = built
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    code, out, err = run_cli(capsys, "reference", "verify", "--suite", tiny_suite, "--backbone", tiny_backbone,
                             "--root", root, "--cells", 0)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0], err


def test_an_edited_number_with_rehashed_manifest_and_pin_still_fails(built, tiny_backbone, tiny_suite, capsys):
    root, folder = built
    transfer = json.loads((folder / "transfer.json").read_text())
    transfer["zero_shot"]["mean"]["pos_a"]["pos_b"] = 0.999
    (folder / "transfer.json").write_text(json.dumps(transfer))
    manifest = {name: reference.sha256_file(folder / name) for name in reference.FILES}
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))
    (root / "index.json").write_text(json.dumps({folder.name: reference.sha256_file(folder / "MANIFEST.json")}))
    code, out, err = run_cli(capsys, "reference", "verify", "--suite", tiny_suite, "--backbone", tiny_backbone,
                             "--root", root, "--cells", 0)
    assert code == 2 and "transfer.json" in err and "does not match the stored predictions" in err


def test_edited_predictions_are_caught_by_rerunning_cells(built, tiny_backbone, tiny_suite, capsys):
    """Predictions rewritten consistently (tables and hashes redone) still fail the cell re-run."""
    root, folder = built
    loaded = reference.read_bundle(folder, None)
    for key in loaded.predictions:
        if key.startswith(("zero_shot/", "init/")):
            loaded.predictions[key] = 1 - loaded.predictions[key]  # flip every binary prediction
    loaded.tasks, loaded.transfer = reference.derive_tables(loaded.info, loaded.predictions)
    reference.save(loaded, folder, pin=root / "index.json")
    code, out, err = run_cli(capsys, "reference", "verify", "--suite", tiny_suite, "--backbone", tiny_backbone,
                             "--root", root, "--cells", 2)
    assert code == 2 and "predictions.safetensors" in err and "re-computes in" in err and "needed:" in err


def test_run_against_a_shipped_reference_trains_and_measures_nothing(built, tiny_backbone, tiny_suite, capsys,
                                                                     monkeypatch, tmp_path, cache):
    root, folder = built
    shutil.rmtree(cache / "prompts")
    shutil.rmtree(cache / "transfer")
    monkeypatch.setattr(reference, "shipped_root", lambda: root)

    def fail(*args, **kwargs):
        raise AssertionError("the reference was measured again")

    monkeypatch.setattr(units, "train_prompts", fail)  # every unit trains through it
    monkeypatch.setattr(units, "predict_many", fail)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "run", "--submit", "-i", "skill_overlap", "-i", "random", "--suite", tiny_suite,
                             "--backbone", tiny_backbone)
    assert code == 0, err
    pinned = json.loads((root / "index.json").read_text())[folder.name]
    files = sorted((tmp_path / "submissions").glob("*.json"))
    assert files and all(json.loads(f.read_text())["reference"] == pinned for f in files)
    assert not (cache / "prompts").exists()


def test_forged_transfer_and_a_file_from_another_reference_are_rejected(built, tiny_backbone, tiny_suite, capsys,
                                                                       monkeypatch, tmp_path):
    from transferbench.evaluation.results import load_results

    root, folder = built
    monkeypatch.setattr(reference, "shipped_root", lambda: root)
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "run", "--submit", "-i", "random", "--suite", tiny_suite, "--backbone", tiny_backbone)[0] == 0
    submissions = tmp_path / "submissions"
    original = next(submissions.glob("*zero_shot__random*.json"))
    # the forgery of the issue: the random baseline's file with `transfer` replaced by its own `scores`
    forged = json.loads(original.read_text())
    forged["transfer"] = forged["scores"]
    forged["transfer_per_seed"] = []  # a forger drops what would contradict the new transfer
    from transferbench.evaluation.results import ResultFile, dataframes, make_result
    scores, transfer = dataframes(ResultFile.model_validate(forged))
    remade = make_result(scores, transfer, indicator="random_copy", suite="tiny", backbone=str(tiny_backbone),
                         transfer_kind="zero_shot", seeds=[0], baseline=True, reference=forged["reference"])
    (submissions / "forged.json").write_text(remade.model_dump_json())
    other = json.loads(original.read_text())
    other["reference"] = "0" * 64
    (submissions / "other_reference.json").write_text(json.dumps(other))
    results, problems = load_results(submissions)
    reasons = {path.name: reason for path, reason in problems}
    assert "transfer matrix differs from the shipped reference" in reasons["forged.json"]
    assert "not the shipped reference" in reasons["other_reference.json"]
    assert all(r.indicator.name == "random" for r in results)


def test_runs_that_differ_only_in_seeds_write_two_files(built, tiny_backbone, tiny_suite, capsys, monkeypatch,
                                                        tmp_path):
    monkeypatch.chdir(tmp_path)
    for seeds in ("0", "1"):
        code, out, err = run_cli(capsys, "run", "--submit", "-i", "random", "--transfer", "init_gain", "--suite", tiny_suite,
                                 "--backbone", tiny_backbone, "--seeds", seeds)
        assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "submissions").glob("*.json"))
    assert len(names) == 2 and any("seeds-0__" in n for n in names) and any("seeds-1__" in n for n in names)
    code, out, err = run_cli(capsys, "run", "--submit", "-i", "random", "--transfer", "init_gain", "--suite",
                             tiny_suite, "--backbone", tiny_backbone, "--seeds", "1")
    assert code == 0 and "unchanged" in out  # the same numbers again: the file is left as it was


def test_library_api_returns_a_dataframe(cache, tiny_backbone, tiny_suite):
    import transferbench

    results = transferbench.run(indicators=["random"], suite=str(tiny_suite), backbone=str(tiny_backbone),
                                kinds=["zero_shot"])
    table = results.table()
    assert list(table["indicator"]) == ["random"] and "mean_spearman" in table.columns
    assert len(results.reference.hash) == 64


SNOOP = '''
import gc
from transferbench.scoring.indicator import Indicator

class Snoop(Indicator):
    """Tries every path from its views to measured transfer; what it finds fails the run (`score`
    runs in a sealed process that can write nothing outside its scratch folder, so it says so by raising)."""
    requires = ("prompts",)

    def score(self, source, target):
        found = []
        for view in (source, target):
            found.append(getattr(getattr(view, "_provider", None), "__self__", None))
            for holder in gc.get_referrers(view):
                found.append(holder if hasattr(holder, "transfer") or hasattr(holder, "_reference") else None)
        names = sorted({type(thing).__name__ for thing in found if thing is not None})
        if names:
            raise RuntimeError("reached " + ", ".join(names))
        return 0.0
'''


def test_an_indicator_cannot_reach_measured_transfer_through_its_views(built, tiny_backbone, tiny_suite, capsys,
                                                                       monkeypatch, tmp_path, cache):
    root, folder = built
    shutil.rmtree(cache / "transfer")
    monkeypatch.setattr(reference, "shipped_root", lambda: root)
    monkeypatch.chdir(tmp_path)
    plugin = tmp_path / "snoop.py"
    plugin.write_text(SNOOP)
    code, out, err = run_cli(capsys, "run", "-i", f"{plugin}:Snoop", "--suite", tiny_suite,
                             "--backbone", tiny_backbone, "--transfer", "zero_shot")
    assert code == 0, err  # the plugin raises as soon as it reaches anything
    # and scoring against the shipped reference put no measured transfer in the store to read
    assert not (cache / "transfer").exists()


def test_verify_re_runs_cells_with_the_builds_threads_per_unit(tmp_path, cache, tiny_backbone, tiny_suite, capsys):
    """CPU numerics depend on the threads per unit, so `verify` re-runs cells with the build's
    (recorded in its build record) unless `--unit-threads` says otherwise; then every re-run cell
    reproduces the stored predictions exactly."""
    root = tmp_path / "refs"
    code, out, err = run_cli(capsys, "reference", "build", "--suite", tiny_suite, "--backbone", tiny_backbone,
                             "--root", root, "--unit-threads", 1)
    assert code == 0, err
    loaded = reference.load_shipped("tiny", str(tiny_backbone), root)
    assert loaded.info["build"]["unit_threads"] == 1
    code, out, err = run_cli(capsys, "reference", "verify", "--suite", tiny_suite, "--backbone", tiny_backbone,
                             "--root", root, "--cells", 4)
    assert code == 0, err
    assert "re-running cells with 1 thread(s) per unit, as the build did" in out
    agreements = re.findall(r"\b(\d\.\d{3})\s+│\s+\d\.\d{4}\s+│\s+\d\.\d{4}", out)
    assert agreements == ["1.000"] * 4, out
    code, out, err = run_cli(capsys, "reference", "verify", "--suite", tiny_suite, "--backbone", tiny_backbone,
                             "--root", root, "--cells", 0, "--unit-threads", 2)
    assert code == 0, err
    assert "as the build did" not in out


def test_a_re_run_cell_passes_within_the_tolerance_of_its_kind():
    """`verify` compares re-run cells with a stated tolerance: the share of predictions as stored and
    the balanced-accuracy difference, looser for initialisation cells (trained first) than for
    zero-shot ones; a cell must meet both."""
    zero, init = verify.cell_tolerance("zero_shot"), verify.cell_tolerance("init")
    assert zero.agreement > init.agreement and zero.delta < init.delta

    def check(agreement, stored, recomputed, tolerance=init):
        return verify.CellCheck("init", "a", "b", 0, agreement, stored, recomputed, tolerance)

    assert check(1.0, 0.7, 0.7).ok
    assert check(init.agreement, 0.7, 0.7 + init.delta / 2).ok
    assert not check(init.agreement - 0.01, 0.7, 0.7).ok  # too many predictions moved
    assert not check(1.0, 0.7, 0.7 + init.delta + 0.01).ok  # the number moved
    assert not check(0.99, 0.7, 0.7 + zero.delta + 0.01, zero).ok
    assert "balanced accuracy within" in init.phrase()


def test_the_build_precision_is_read_from_the_build_record_or_the_config():
    assert verify.build_precision({"config": {"bf16": True}, "build": {}}) == "bf16"
    assert verify.build_precision({"config": {"bf16": False}, "build": {}}) == "fp32"
    assert verify.build_precision({"config": {"bf16": True}, "build": {"precision": {"precision": "fp16"}}}) == "fp16"
