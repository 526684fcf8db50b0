"""Stage 6: result files (write, load, validate, re-check) and the leaderboard built from them."""

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from transferbench.errors import TransferbenchError
from transferbench.leaderboard import COLUMNS, build_tables, leaderboard_json, render_rich, write_leaderboard
from transferbench.results import (
    SCHEMA_VERSION,
    ResultFile,
    dataframes,
    load_results,
    make_result,
    per_seed_frames,
    result_filename,
    write_result,
)

TASKS = ["sst2", "rotten", "tweets", "amazon", "nyt", "bbc", "snli", "empathy"]


def transfer_matrix(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.uniform(0.3, 1.0, (8, 8)), index=TASKS, columns=TASKS)


def result(name, noise, *, suite="sentiment", seed=0, params=None, baseline=False,
           created_at="2025-01-01T00:00:00+00:00", kind="zero_shot", drop=False):
    transfer = transfer_matrix()
    scores = transfer + np.random.default_rng(seed).normal(scale=noise, size=transfer.shape)
    if drop:  # leave target `snli` with 2 sources
        scores.loc[TASKS[:5], "snli"] = np.nan
    return make_result(
        scores, transfer, indicator=name, params=params, baseline=baseline, suite=suite,
        backbone="sentence-transformers/all-MiniLM-L6-v2", transfer_kind=kind, seeds=[0, 1],
        manifest={"created_at": created_at, "git_commit": "abc123"}, n_bootstrap=500,
    )


@pytest.fixture
def submissions(tmp_path):
    folder = tmp_path / "submissions"
    write_result(result("skill_overlap", 0.05, params={"p": 0.05}), folder)
    write_result(result("prompt_cosine", 0.3, seed=1, drop=True), folder)
    write_result(result("random", 5.0, seed=2, baseline=True), folder)
    return folder


def test_filename_names_what_produced_the_result():
    r = result("skill_overlap", 0.1, params={"p": 0.05})
    name = result_filename(r)
    assert name.startswith("sentiment__sentence-transformers-all-MiniLM-L6-v2__zero_shot__skill_overlap-")
    assert name.endswith(".json") and "/" not in name
    assert name == result_filename(result("skill_overlap", 0.2, params={"p": 0.05}))
    assert name != result_filename(result("skill_overlap", 0.1, params={"p": 0.1}))
    assert result_filename(result("random", 1.0)).endswith("__zero_shot__random.json")


def test_write_load_round_trip(tmp_path):
    r = result("prompt_cosine", 0.3, drop=True)
    path = write_result(r, tmp_path)
    text = path.read_text()
    assert "NaN" not in text and "null" in text
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["scores"]["sst2"]["snli"] is None
    loaded, problems = load_results(tmp_path)
    assert problems == [] and len(loaded) == 1
    assert loaded[0].path == path
    assert loaded[0].model_dump(mode="json") == r.model_dump(mode="json")
    scores, transfer = dataframes(loaded[0])
    original_scores, original_transfer = dataframes(r)
    pd.testing.assert_frame_equal(scores, original_scores)
    pd.testing.assert_frame_equal(transfer, original_transfer)
    assert list(scores.index) == TASKS and math.isnan(scores.loc["sst2", "snli"])


def test_bad_files_are_reported_by_name_and_left_out(submissions):
    (submissions / "broken.json").write_text("{not json")
    (submissions / "nested").mkdir()
    future = json.loads(next(submissions.glob("*random.json")).read_text())
    future["schema_version"] = 2
    (submissions / "nested" / "future.json").write_text(json.dumps(future))
    tampered = json.loads(next(submissions.glob("*prompt_cosine.json")).read_text())
    tampered["metrics"]["mean_spearman"] += 0.2
    (submissions / "tampered.json").write_text(json.dumps(tampered))
    edited = json.loads(next(submissions.glob("*skill_overlap-*.json")).read_text())
    edited["scores"]["sst2"]["nyt"] = 100.0  # scores changed, metrics kept
    (submissions / "edited.json").write_text(json.dumps(edited))
    extra = dict(edited, surprise=1)
    (submissions / "extra.json").write_text(json.dumps(extra))

    results, problems = load_results(submissions)
    assert sorted(r.indicator.name for r in results) == ["prompt_cosine", "random", "skill_overlap"]
    reasons = {path.name: reason for path, reason in problems}
    assert set(reasons) == {"broken.json", "future.json", "tampered.json", "edited.json", "extra.json"}
    assert "not readable JSON" in reasons["broken.json"]
    assert "schema_version is 2" in reasons["future.json"]
    assert "do not reproduce" in reasons["tampered.json"] and "mean_spearman" in reasons["tampered.json"]
    assert "do not reproduce" in reasons["edited.json"]
    assert "surprise" in reasons["extra.json"]
    assert all("\n" not in reason for reason in reasons.values())


def test_missing_submissions_folder_is_a_user_error(tmp_path):
    with pytest.raises(TransferbenchError, match="does not exist"):
        load_results(tmp_path / "nowhere")


def test_table_ranks_by_mean_spearman_with_significance(submissions):
    results, _ = load_results(submissions)
    tables = build_tables(results)
    assert list(tables) == [("sentiment", "sentence-transformers/all-MiniLM-L6-v2", "zero_shot")]
    table = next(iter(tables.values()))
    assert list(table.columns) == COLUMNS
    assert list(table["indicator"]) == ["skill_overlap(p=0.05)", "prompt_cosine", "random"]
    assert list(table["rank"]) == [1, 2, 3]
    assert list(table["baseline"]) == [False, False, True]
    assert list(table["targets_covered"]) == ["8/8", "7/8", "8/8"]
    assert math.isnan(table["sig"].iloc[0])
    assert table["sig"].iloc[2] < 0.05  # the real indicator clearly beats random
    assert (table["ci_low"] <= table["mean_spearman"]).all()
    assert (table["mean_spearman"] <= table["ci_high"]).all()


def test_different_suites_backbones_and_kinds_are_never_ranked_together():
    results = [
        result("skill_overlap", 0.1),
        result("skill_overlap", 0.1, suite="topics"),
        result("prompt_cosine", 0.2, suite="topics"),
        result("skill_overlap", 0.1, kind="init_gain"),
    ]
    tables = build_tables(results)
    assert sorted((suite, kind) for suite, _, kind in tables) == [
        ("sentiment", "init_gain"), ("sentiment", "zero_shot"), ("topics", "zero_shot")
    ]
    assert [len(t) for t in tables.values()] == [1, 1, 2]


def test_duplicates_keep_the_newest_and_say_so():
    old = result("skill_overlap", 0.5, created_at="2025-01-01T00:00:00+00:00")
    new = result("skill_overlap", 0.01, created_at="2025-03-01T00:00:00+00:00")
    table = next(iter(build_tables([new, old]).values()))
    assert len(table) == 1
    assert table["mean_spearman"].iloc[0] == new.metrics.mean_spearman
    assert "kept the newest" in table.attrs["notes"][0]
    assert table.equals(next(iter(build_tables([old, new]).values())))


def test_undefined_mean_ranks_last():
    transfer = transfer_matrix()
    constant = make_result(
        pd.DataFrame(1.0, index=TASKS, columns=TASKS), transfer, indicator="constant",
        suite="sentiment", backbone="sentence-transformers/all-MiniLM-L6-v2",
        transfer_kind="zero_shot", seeds=[0], n_bootstrap=100,
    )
    table = next(iter(build_tables([constant, result("random", 5.0, baseline=True)]).values()))
    assert list(table["indicator"]) == ["random", "constant"]
    assert table["targets_covered"].iloc[1] == "0/8"
    assert math.isnan(table["sig"].iloc[1])


def test_leaderboard_files_are_deterministic(submissions, tmp_path):
    (submissions / "broken.json").write_text("[]")
    results, problems = load_results(submissions)
    first = write_leaderboard(results, tmp_path / "board", problems)
    assert [p.name for p in first[:4]] == ["README.md", "leaderboard.csv", "leaderboard.json", "index.html"]
    assert all(p.parent.name == "plots" and p.suffix == ".png" for p in first[4:])
    contents = [p.read_bytes() for p in first]
    results_again, problems_again = load_results(submissions)
    write_leaderboard(list(reversed(results_again)), tmp_path / "board", problems_again)
    assert [p.read_bytes() for p in first] == contents

    readme = contents[0].decode()
    assert "| skill_overlap(p=0.05) |" in readme
    assert "random (baseline)" in readme
    assert " *" in readme  # random is significantly below prompt_cosine
    assert "broken.json" in readme and "Skipped" in readme
    csv = pd.read_csv(first[1])
    assert list(csv.columns) == ["suite", "backbone", "transfer_kind", *COLUMNS]
    assert len(csv) == 3
    board = json.loads(contents[2])
    assert board["tables"][0]["rows"][0]["sig"] is None
    assert board["skipped"][0]["path"].endswith("broken.json")
    assert board == json.loads(json.dumps(leaderboard_json(results, problems)))


def test_leaderboard_json_has_no_nan(submissions):
    results, _ = load_results(submissions)
    text = json.dumps(leaderboard_json(results), allow_nan=False)
    rows = json.loads(text)["tables"][0]["rows"]
    assert [row["rank"] for row in rows] == [1, 2, 3]
    assert set(rows[0]) == set(COLUMNS)


def test_render_rich_shows_ci_and_marks(submissions):
    results, _ = load_results(submissions)
    buffer = io.StringIO()
    render_rich(build_tables(results), Console(file=buffer, width=250, color_system=None))
    text = buffer.getvalue()
    assert "skill_overlap(p=0.05)" in text and "random (baseline)" in text
    row = next(line for line in text.splitlines() if "skill_overlap" in line)
    assert "[" in row and "," in row.split("[")[1]
    assert "*" in text


def test_result_schema_rejects_inconsistent_matrices():
    data = result("random", 1.0).model_dump(mode="json")
    del data["scores"]["sst2"]
    with pytest.raises(ValueError, match="scores must have every task"):
        ResultFile.model_validate(data)


def test_duplicate_files_on_disk_are_named_in_the_note(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_result(result("random", 1.0, created_at="2025-01-01T00:00:00+00:00"), tmp_path / "subs" / "old")
    write_result(result("random", 1.0, created_at="2025-02-01T00:00:00+00:00"), tmp_path / "subs" / "new")
    results, problems = load_results(tmp_path / "subs")
    assert problems == [] and len(results) == 2
    write_leaderboard(results, tmp_path / "board")
    readme = (tmp_path / "board" / "README.md").read_text()
    assert "kept the newest (subs/new/" in readme and "ignored subs/old/" in readme


# ---------------------------------------------------------------------------------------------
# Optional schema fields: families and the measured transfer per seed.

FAMILIES = {"sst2": "sentiment", "rotten": "sentiment", "tweets": "sentiment", "amazon": "sentiment",
            "nyt": "sentiment", "bbc": "topic", "snli": "nli", "empathy": "emotion"}


def seeded_result(name, noise, *, seed=0, baseline=False, n_seeds=3):
    """A result with families and `n_seeds` per-seed transfer matrices whose mean is `transfer`."""
    rng = np.random.default_rng(100 + seed)
    per_seed = [transfer_matrix() + rng.normal(scale=0.05, size=(8, 8)) for _ in range(n_seeds)]
    transfer = sum(per_seed) / n_seeds
    scores = transfer + np.random.default_rng(seed).normal(scale=noise, size=transfer.shape)
    return make_result(
        scores, transfer, indicator=name, baseline=baseline, suite="sentiment",
        backbone="sentence-transformers/all-MiniLM-L6-v2", transfer_kind="zero_shot",
        seeds=list(range(n_seeds)), manifest={"created_at": "2025-01-01T00:00:00+00:00"}, n_bootstrap=200,
        families=FAMILIES, transfer_per_seed=per_seed, n_permutations=300,
    )


def test_families_and_per_seed_transfer_round_trip_and_feed_the_metrics(tmp_path):
    r = seeded_result("skill_overlap", 0.2)
    assert r.families == FAMILIES and len(r.transfer_per_seed) == 3
    assert r.metrics.n_targets_within_family == 5  # the 5 sentiment targets have 4 same-family sources
    assert not math.isnan(r.metrics.partial_spearman) and r.metrics.permutation_p < 0.05
    write_result(r, tmp_path)
    (loaded,), problems = load_results(tmp_path)
    assert problems == []
    assert loaded.model_dump(mode="json") == r.model_dump(mode="json")
    frames = per_seed_frames(loaded)
    pd.testing.assert_frame_equal(sum(frames) / 3, dataframes(loaded)[1])


def test_a_file_whose_families_were_edited_no_longer_reproduces(tmp_path):
    path = write_result(seeded_result("skill_overlap", 0.2), tmp_path)
    data = json.loads(path.read_text())
    data["families"]["bbc"] = "sentiment"
    path.write_text(json.dumps(data))
    results, problems = load_results(tmp_path)
    assert results == [] and "do not reproduce" in problems[0][1]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["families"].pop("bbc"), "families must name the family of every task"),
        (lambda d: d["families"].update(bbc=""), "empty family name"),
        (lambda d: d["transfer_per_seed"].pop(), "2 matrices for 3 seeds"),
        (lambda d: d["transfer_per_seed"][1].pop("nyt"), r"transfer_per_seed\[1\] must have every task"),
        (lambda d: d["transfer_per_seed"][0]["sst2"].update(nyt=5.0), "not the mean over seeds"),
    ],
)
def test_schema_rejects_inconsistent_families_and_per_seed_transfer(edit, message):
    data = seeded_result("random", 1.0).model_dump(mode="json")
    edit(data)
    with pytest.raises(ValueError, match=message):
        ResultFile.model_validate(data)


def test_a_missing_seed_value_is_accepted_with_either_mean_convention():
    data = seeded_result("random", 1.0).model_dump(mode="json")
    values = [m["sst2"]["nyt"] for m in data["transfer_per_seed"]]
    data["transfer_per_seed"][0]["sst2"]["nyt"] = None
    data["transfer"]["sst2"]["nyt"] = None  # NaN-propagating mean
    ResultFile.model_validate(data)
    data["transfer"]["sst2"]["nyt"] = sum(values[1:]) / 2  # mean of the seeds that have a value
    ResultFile.model_validate(data)


def test_a_file_written_before_the_new_fields_still_loads(tmp_path):
    old = result("random", 1.0, baseline=True)
    data = old.model_dump(mode="json")
    del data["families"], data["transfer_per_seed"]
    new_keys = ("within_family_spearman", "n_targets_within_family", "across_family_spearman",
                "n_targets_across_family", "partial_spearman", "n_permutations", "permutation_p")
    for key in new_keys:
        del data["metrics"][key]
    for target in data["metrics"]["per_target"].values():
        del target["within_family"], target["across_family"], target["partial"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    (loaded,), problems = load_results(tmp_path)
    assert problems == [] and loaded.metrics.n_permutations == 0
    assert math.isnan(loaded.metrics.permutation_p) and math.isnan(loaded.metrics.within_family_spearman)
