"""The verdict across backbones: the pooled table of every shipped reference of a suite, each
(backbone, target) one unit, built from synthetic references on two backbones."""

import copy
import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from test_leaderboard import REF_SEEDS, REF_TASKS, ref_result, synthetic_reference
from transferbench.evaluation.results import load_results, write_result
from transferbench.evaluation.verdict_statistics import (
    paired_mdd, pooled_rank_intervals, rank_intervals,
)
from transferbench.cli import main
from transferbench.leaderboard import leaderboard_csv, leaderboard_json, render_html, render_rich, write_leaderboard
from transferbench.leaderboard.pooled import backbone_column, pooled_tables
from transferbench.leaderboard.tables import grouped_tables, table_settings


def terminal(results, width: int = 250) -> str:
    """What `transferbench leaderboard` prints for `results` (the per-backbone and pooled tables)."""
    settings = table_settings(results)
    buffer = io.StringIO()
    render_rich(grouped_tables(settings), Console(file=buffer, width=width, color_system=None),
                pooled=pooled_tables(settings))
    return buffer.getvalue()


def csv_frame(results) -> pd.DataFrame:
    settings = table_settings(results)
    return pd.read_csv(io.StringIO(leaderboard_csv(grouped_tables(settings), pooled_tables(settings))))


def reference_on(backbone: str, rng_seed: int, excluded: dict[str, str] | None = None):
    """The synthetic reference, on another backbone with its own transfer (and admitted targets)."""
    ref = synthetic_reference()
    ref.info = copy.deepcopy(ref.info)
    ref.info["backbone"]["backbone"] = backbone
    rng = np.random.default_rng(rng_seed)
    per_seed = {s: {t: (None if s == t else [float(v) for v in rng.uniform(0.0, 1.0, len(REF_SEEDS))])
                    for t in REF_TASKS} for s in REF_TASKS}
    mean = {s: {t: (None if v is None else float(np.mean(v))) for t, v in row.items()} for s, row in per_seed.items()}
    ref.transfer = {"zero_shot": {"mean": mean, "per_seed": per_seed}}
    if excluded is not None:
        ref.tasks = {t: {"admitted": t not in excluded, "excluded_because": excluded.get(t, "")} for t in REF_TASKS}
    return ref


@pytest.fixture
def two_backbones(tmp_path, monkeypatch):
    """Two shipped references of suite syn (tiny-bb excludes tb; tiny-mlm admits every target) and
    an official submissions folder: skill_overlap and random on both, prompt_cosine on tiny-bb only."""
    from transferbench.reference import bundle as reference_module

    root = tmp_path / "reference"
    bb = reference_on("tiny-bb", 7)
    mlm = reference_on("tiny-mlm", 11, excluded={})
    reference_module.save(bb, root / "syn__tiny-bb", pin=root / "index.json")
    reference_module.save(mlm, root / "syn__tiny-mlm", pin=root / "index.json")
    monkeypatch.setattr(reference_module, "shipped_root", lambda: root)
    folder = tmp_path / "submissions"
    for ref, backbone, excluded in ((bb, "tiny-bb", None), (mlm, "tiny-mlm", {})):
        extra = {} if excluded is None else {"excluded": excluded}
        write_result(ref_result(ref, "skill_overlap", seed=1, backbone=backbone, **extra), folder)
        write_result(ref_result(ref, "random", seed=2, backbone=backbone, baseline=True, **extra), folder)
    write_result(ref_result(bb, "prompt_cosine", seed=3, backbone="tiny-bb"), folder)
    results, problems = load_results(folder)
    assert problems == []
    return results


def test_pooled_mean_is_the_unit_weighted_mean_over_backbone_target_units(two_backbones):
    (key, table), = pooled_tables(table_settings(two_backbones)).items()
    assert tuple(key) == ("syn", "zero_shot")
    assert [b["backbone"] for b in table.attrs["backbones"]] == ["tiny-bb", "tiny-mlm"]
    assert [b["units"] for b in table.attrs["backbones"]] == [4, 5]
    for name in ("skill_overlap", "random"):
        row = table.set_index("indicator").loc[name]
        files = {r.backbone: r for r in two_backbones if r.indicator.name == name}
        units = [rho for r in files.values() for rho in r.metrics.per_target_spearman().values() if not math.isnan(rho)]
        assert row["mean_spearman"] == pytest.approx(np.mean(units), abs=1e-12)
        assert row["units_covered"] == len(units) == 9
        assert bool(row["complete"]) and row["backbones_covered"] == 2
        for backbone, result in files.items():  # the per-backbone means stay visible
            assert row[backbone_column(backbone)] == pytest.approx(result.metrics.mean_spearman)
        # 4 and 5 units: the unit-weighted mean is not the mean of the two backbone means
        backbone_means = [r.metrics.mean_spearman for r in files.values()]
        assert row["mean_spearman"] != pytest.approx(np.mean(backbone_means), abs=1e-9)
        assert 1 <= row["rank_low"] <= row["rank_high"] <= len(table)
        assert row["ci_low"] <= row["ci_high"]


def test_an_indicator_missing_on_one_backbone_is_marked_and_ranked_after_complete_rows(two_backbones):
    (key, table), = pooled_tables(table_settings(two_backbones)).items()
    assert list(table["indicator"])[-1] == "prompt_cosine"
    row = table.set_index("indicator").loc["prompt_cosine"]
    assert not row["complete"] and row["backbones_covered"] == 1 and row["units_covered"] == 4
    assert math.isnan(row[backbone_column("tiny-mlm")])
    board = leaderboard_json(two_backbones)
    (pooled,) = board["pooled_tables"]
    shown = {r["indicator"]: r for r in pooled["rows"]}
    assert shown["prompt_cosine"]["backbones_covered"] == 1 and shown["prompt_cosine"]["per_backbone"]["tiny-mlm"] is None
    assert set(shown["skill_overlap"]["per_backbone"]) == {"tiny-bb", "tiny-mlm"}
    assert pooled["units"] == 9 and any("k/n backbones" in note for note in pooled["notes"])


def test_every_format_shows_the_pooled_table(two_backbones, tmp_path):
    write_leaderboard(two_backbones, tmp_path / "board")
    markdown = (tmp_path / "board" / "README.md").read_text()
    assert "## Pooled across backbones" in markdown
    assert "### suite syn · transfer zero_shot · pooled across backbones (2 backbones)" in markdown
    assert "| ρ tiny-bb | ρ tiny-mlm |" in markdown and "prompt_cosine (1/2 backbones)" in markdown
    assert "only backbone" not in markdown
    data = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    assert [t["transfer_kind"] for t in data["pooled_tables"]] == ["zero_shot"] and data["pooled_notes"] == []
    page = (tmp_path / "board" / "index.html").read_text()
    assert page == render_html(two_backbones)
    assert '<table class="pooled">' in page and "prompt_cosine (1/2 backbones)" in page
    # the CSV: the per-backbone rows, then the pooled ones, named by their joined backbones
    csv = pd.read_csv(tmp_path / "board" / "leaderboard.csv")
    assert (tmp_path / "board" / "leaderboard.csv").read_text() == leaderboard_csv(
        grouped_tables(table_settings(two_backbones)), pooled_tables(table_settings(two_backbones)))
    assert list(csv["table"]) == ["backbone"] * 5 + ["pooled"] * 3
    pooled_rows = csv[csv["table"] == "pooled"].set_index("indicator")
    assert set(pooled_rows["backbone"]) == {"tiny-bb+tiny-mlm"}
    (key, table), = pooled_tables(table_settings(two_backbones)).items()
    for name, row in table.set_index("indicator").iterrows():
        shown = pooled_rows.loc[name]
        assert shown["mean_spearman"] == pytest.approx(row["mean_spearman"], rel=1e-5)
        assert (shown["rank_low"], shown["rank_high"], shown["units_covered"]) == (
            row["rank_low"], row["rank_high"], row["units_covered"])
        assert str(shown["complete"]) == str(row["complete"])
        for backbone in ("tiny-bb", "tiny-mlm"):
            column = backbone_column(backbone)
            assert (math.isnan(shown[column]) and math.isnan(row[column])) or shown[column] == pytest.approx(row[column], rel=1e-5)
    assert csv[csv["table"] == "backbone"][["units_covered", "mdd", "rho[tiny-bb]"]].isna().all().all()
    # the terminal: the pooled table after the per-backbone ones, within 100 columns
    text = terminal(two_backbones)
    assert "suite syn · transfer zero_shot · pooled across backbones (2 backbones)" in text
    assert text.index("pooled across backbones") > text.index("backbone tiny-mlm")
    header = next(line for line in text.splitlines() if "tiny-mlm" in line and "indicator" in line)
    assert "prompt_cosine (1/2 backbones)" in text and "tiny-bb" in header and "[95% CI]" in header
    assert "note: Pooled over 2 backbones" in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    narrow = terminal(two_backbones, width=80)
    assert max(len(line.rstrip()) for line in narrow.splitlines()) <= 80 and "prompt_cosine (1/2 backbones)" in narrow
    assert "not shown: p vs above, MDD vs above, units" in narrow and "0.40 [-0.70, 1.00]" in narrow


def test_one_shipped_backbone_is_one_line_in_every_format_not_a_repeated_table(two_backbones, tmp_path):
    only_bb = [r for r in two_backbones if r.backbone == "tiny-bb"]
    board = leaderboard_json(only_bb)
    assert board["pooled_tables"] == []
    (line,) = board["pooled_notes"]
    assert line.startswith("Pooled across backbones, suite syn: only backbone tiny-bb (reference ")
    assert "no pooled table is shown" in line and "zero_shot" in line and "another backbone's reference" in line
    (_, table), = pooled_tables(table_settings(only_bb)).items()
    assert f"zero_shot {table.attrs['median_mdd']:.2f}." in line  # the one figure the table added
    write_leaderboard(only_bb, tmp_path / "board")
    markdown = (tmp_path / "board" / "README.md").read_text()
    assert "## Pooled across backbones" in markdown and line in markdown
    assert "pooled across backbones (1 backbone)" not in markdown and "pooled mean ρ" not in markdown
    page = (tmp_path / "board" / "index.html").read_text()
    assert '<table class="pooled">' not in page and "no pooled table is shown" in page
    csv = pd.read_csv(tmp_path / "board" / "leaderboard.csv")
    assert set(csv["table"]) == {"backbone"} and len(csv) == 3
    text = terminal(only_bb)
    assert "pooled across backbones (" not in text
    assert " ".join(text.split()).count("Pooled across backbones, suite syn: only backbone tiny-bb") == 1


def test_the_command_line_shows_the_pooled_table_in_every_format(two_backbones, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "official"
    for result in two_backbones:
        write_result(result, folder)
    monkeypatch.setenv("TRANSFERBENCH_RESULTS", str(tmp_path / "mine"))
    base = ["leaderboard", "--submissions-dir", str(folder), "--leaderboard-dir", str(tmp_path / "board")]
    shown = {}
    for fmt in ("rich", "md", "csv", "json", "html"):
        capsys.readouterr()
        assert main([*base, "--format", fmt]) == 0
        shown[fmt] = capsys.readouterr().out
    assert "pooled across backbones (2 backbones)" in shown["rich"]
    assert "### suite syn · transfer zero_shot · pooled across backbones (2 backbones)" in shown["md"]
    assert "tiny-bb+tiny-mlm" in shown["csv"] and ",pooled," in shown["csv"]
    assert json.loads(shown["json"])["pooled_tables"][0]["backbones"][1]["backbone"] == "tiny-mlm"
    assert '<table class="pooled">' in shown["html"]


def test_settings_without_a_shipped_reference_and_local_results_are_not_pooled(two_backbones, tmp_path):
    assert leaderboard_json([r.model_copy(update={"suite": "mine", "reference": None}) for r in two_backbones]
                            )["pooled_tables"] == []
    folder = tmp_path / "mine"
    write_result(two_backbones[0], folder)
    local, _ = load_results(folder, local=True)
    assert leaderboard_json(local)["pooled_tables"] == []


def test_one_stratum_gives_the_rank_intervals_of_the_table():
    from transferbench.evaluation.results import dataframes, per_seed_frames

    ref = synthetic_reference()
    files = [ref_result(ref, name, seed=k) for k, name in enumerate(("a", "b", "c"))]
    scores = [dataframes(r)[0] for r in files]
    per_seed = [per_seed_frames(r) for r in files]
    intervals, cis = pooled_rank_intervals([list(zip(scores, per_seed))], n_bootstrap=200, seed=3)
    assert intervals == rank_intervals(scores, per_seed, n_bootstrap=200, seed=3)
    assert all(low <= high for low, high in cis)


def test_minimum_detectable_difference_is_the_paired_power_formula():
    from scipy import stats

    a = {f"u{k}": v for k, v in enumerate([0.5, 0.2, 0.9, 0.4, 0.7, 0.1])}
    b = {f"u{k}": v for k, v in enumerate([0.3, 0.4, 0.6, 0.1, 0.6, 0.2])}
    d = np.array([a[u] - b[u] for u in a])
    expected = (stats.t.ppf(0.975, 5) + stats.t.ppf(0.8, 5)) * d.std(ddof=1) / np.sqrt(6)
    assert paired_mdd(a, b) == pytest.approx(expected)
    assert paired_mdd(a, {**b, "u0": math.nan}) != pytest.approx(expected)
    assert math.isnan(paired_mdd({"u0": 1.0, "u1": 0.0}, {"u0": 0.0, "u1": 1.0}))
