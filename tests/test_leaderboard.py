"""Stage 6: result files (write, load, validate, re-check) and the leaderboard built from them."""

import io
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from transferbench.errors import TransferbenchError
from transferbench.leaderboard import (
    COLUMNS,
    build_tables,
    leaderboard_csv,
    leaderboard_json,
    render_html,
    render_markdown,
    render_rich,
    write_leaderboard,
)
from transferbench.leaderboard.render import CSV_POOLED_COLUMNS
from transferbench.evaluation.results import (
    SCHEMA_VERSION,
    ResultFile,
    dataframes,
    load_results,
    make_result,
    per_seed_frames,
    result_filename,
    result_json,
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
    assert result_filename(result("random", 1.0)).endswith("__zero_shot__random__seeds-0-1__ref-none.json")


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
    future = json.loads(next(submissions.glob("*random*.json")).read_text())
    future["schema_version"] = 99
    (submissions / "nested" / "future.json").write_text(json.dumps(future))
    tampered = json.loads(next(submissions.glob("*prompt_cosine*.json")).read_text())
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
    assert "schema_version is 99" in reasons["future.json"]
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
    assert list(tables) == [("sentiment", "sentence-transformers/all-MiniLM-L6-v2", "zero_shot", "none")]
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
    assert sorted((key.suite, key.transfer_kind) for key in tables) == [
        ("sentiment", "init_gain"), ("sentiment", "zero_shot"), ("topics", "zero_shot")
    ]
    assert [len(t) for t in tables.values()] == [1, 1, 2]


def test_duplicates_keep_the_newest_and_say_so():
    old = result("skill_overlap", 0.5, created_at="2025-01-01T00:00:00+00:00")
    new = result("skill_overlap", 0.01, created_at="2025-03-01T00:00:00+00:00")
    table = next(iter(build_tables([new, old]).values()))
    assert len(table) == 1
    assert table["mean_spearman"].iloc[0] == new.metrics.mean_spearman
    assert any("kept the newest" in note for note in table.attrs["notes"])
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
    assert list(csv.columns) == ["suite", "backbone", "transfer_kind", "reference", *COLUMNS, "split_seed_tau",
                                 *CSV_POOLED_COLUMNS]
    assert set(csv["table"]) == {"backbone"}  # no shipped reference of this suite: nothing pooled
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
    results, problems = load_results(tmp_path / "subs", local=True)  # a user's folder: the newest is shown
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



# ---------------------------------------------------------------------------------------------
# The verdict columns: family-aware rho, permutation p, rank interval, split-seed tau.


def same_family_result():
    base = seeded_result("random", 1.0)
    scores = pd.DataFrame(
        [[float(FAMILIES[s] == FAMILIES[t]) for t in TASKS] for s in TASKS], index=TASKS, columns=TASKS
    )
    return make_result(
        scores, dataframes(base)[1], indicator="same_family", baseline=True, suite="sentiment",
        backbone="sentence-transformers/all-MiniLM-L6-v2", transfer_kind="zero_shot", seeds=[0, 1, 2],
        manifest={"created_at": "2025-01-01T00:00:00+00:00"}, n_bootstrap=200, families=FAMILIES,
        transfer_per_seed=per_seed_frames(base), n_permutations=300,
    )


@pytest.fixture(scope="module")
def verdict_tables():
    results = [seeded_result("skill_overlap", 0.02), seeded_result("random", 5.0, seed=2, baseline=True),
               seeded_result("prompt_cosine", 0.5, seed=1), same_family_result()]
    return results, build_tables(results)


def test_table_has_family_permutation_and_rank_columns(verdict_tables):
    _, tables = verdict_tables
    table = next(iter(tables.values()))
    assert table["indicator"].iloc[0] == "skill_overlap"
    rows = table.set_index("indicator")
    good, rnd, same = rows.loc["skill_overlap"], rows.loc["random"], rows.loc["same_family"]
    assert (good["rank_low"], good["rank_high"]) == (1, 1)  # far ahead whatever targets or seeds are drawn
    assert (table["rank_low"] <= table["rank_high"]).all() and table["rank_high"].max() <= len(table)
    assert good["permutation_p"] < 0.01 and rnd["permutation_p"] > good["permutation_p"]
    assert good["within_family"] > 0.8 and good["within_family_targets"] == 5
    assert good["across_family_targets"] == 8 and good["partial_spearman"] > 0.8
    # The family baseline is undefined inside a family and once the family is controlled.
    assert math.isnan(same["within_family"]) and same["within_family_targets"] == 0
    assert math.isnan(same["partial_spearman"])
    assert table.attrs["rank_resampled"] == "targets and seeds" and table.attrs["rank_note"] == ""
    assert table.attrs["split_seed_splits"] == 3 and -1 <= table.attrs["split_seed_tau"] <= 1


def test_every_format_shows_the_new_columns_and_the_split_seed_tau(verdict_tables):
    results, tables = verdict_tables
    readme = render_markdown(tables)
    header = next(line for line in readme.splitlines() if line.startswith("| #"))
    for column in ("perm. p", "rank 95%", "within ρ", "across ρ", "partial ρ"):
        assert column in header
    row = next(line for line in readme.splitlines() if line.startswith("| 1 | skill_overlap"))
    assert "| 1–1 |" in row and "(5) |" in row
    assert "split-seed τ = " in readme and "mean of 3 splits" in readme
    assert "same_family" in readme and "knows more than the family" in readme
    csv = pd.read_csv(io.StringIO(leaderboard_csv(tables)))
    assert {"within_family", "across_family", "partial_spearman", "permutation_p", "rank_low", "rank_high"} <= set(csv)
    assert csv["split_seed_tau"].nunique() == 1
    board = leaderboard_json(results)
    assert board["tables"][0]["split_seed_splits"] == 3 and board["tables"][0]["rank_resampled"] == "targets and seeds"
    assert board["tables"][0]["rows"][0]["rank_low"] == 1
    page = render_html(results)
    headers = re.findall(r"<th [^>]*>", page)
    assert len(headers) == 17 and all('title="' in h for h in headers)
    assert re.search(r'data-key="within_family"[^>]*title="Mean ρ over the sources of the target&#x27;s own family', page)
    assert "knows more than the family" in page.split("</table>")[1]
    assert "split-seed τ = " in page


def test_without_per_seed_transfer_the_board_says_what_it_resampled(submissions):
    results, _ = load_results(submissions)
    table = next(iter(build_tables(results).values()))
    assert table.attrs["rank_resampled"] == "targets only"
    assert "3 of 3 result files carry no per-seed transfer" in table.attrs["rank_note"]
    assert math.isnan(table.attrs["split_seed_tau"])
    assert "split-seed τ: – (3 of 3 result files carry no per-seed transfer)" in render_markdown(build_tables(results))
    assert list(table["rank_low"]) == [1, 2, 3]  # skill_overlap and random are far apart


def test_one_seed_gives_no_split_seed_tau_and_says_why():
    results = [seeded_result("skill_overlap", 0.1, n_seeds=1), seeded_result("random", 5.0, seed=2, n_seeds=1)]
    table = next(iter(build_tables(results).values()))
    assert math.isnan(table.attrs["split_seed_tau"]) and "fewer than 2 seeds" in table.attrs["split_seed_reason"]


def test_rich_table_fits_100_columns_and_prints_the_split_seed_tau(verdict_tables):
    _, tables = verdict_tables
    buffer = io.StringIO()
    render_rich(tables, Console(file=buffer, width=250, color_system=None))
    text = buffer.getvalue()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    assert "perm. p" in text and "rank 95%" in text and "within ρ" in text and "split-seed τ = " in text


@pytest.fixture(scope="module")
def long_name_tables():
    """The longest built-in names, a baseline and a local result, with negative CIs (widest cells)."""
    results = [seeded_result("embedding_similarity", 0.02), seeded_result("task_embedding", 0.5, seed=1, baseline=True),
               seeded_result("random", 5.0, seed=2, baseline=True), seeded_result("activation_overlap", 9.0, seed=3)]
    results[-1]._local = True
    return build_tables(results)


def _rich_text(tables, width, columns="default"):
    buffer = io.StringIO()
    render_rich(tables, Console(file=buffer, width=width, color_system=None), columns=columns)
    return buffer.getvalue()


@pytest.mark.parametrize("width", [80, 100, 150])
def test_rich_table_fits_the_terminal_with_whole_names_and_one_line_cis(long_name_tables, width):
    from transferbench.leaderboard.render import _display_cells

    text = _rich_text(long_name_tables, width)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= min(width, 100)
    table = next(iter(long_name_tables.values()))
    for _, row in table.iterrows():
        label, with_ci = _display_cells(row)[1:3]
        # the indicator (marks included) and the mean with its CI are whole, on the row's one line
        assert any(label in line and with_ci in line for line in lines), (label, with_ci, text)
    assert "activation_overlap (local)" in text and "task_embedding (baseline)" in text
    assert "rank 95%" in text  # the columns a reader decides on stay as long as they fit
    if width >= 100:
        assert "p vs above" in text and "perm. p" in text
    shown_all = "partial ρ" in text and "within ρ" in text
    assert shown_all or "not shown:" in text  # a left-out column is named, with how to see it


def test_rich_footnote_only_when_a_row_is_starred(long_name_tables, verdict_tables):
    table = next(iter(long_name_tables.values()))
    starred = table["sig"].lt(0.05).any()
    assert ("* p < 0.05" in _rich_text(long_name_tables, 100)) == bool(starred)
    unstarred = {key: frame.assign(sig=math.nan) for key, frame in long_name_tables.items()}
    assert "* p < 0.05" not in _rich_text(unstarred, 100)
    forced = {key: frame.assign(sig=[math.nan, 0.01, 0.5, 0.5]) for key, frame in long_name_tables.items()}
    assert "* p < 0.05 against the row above" in _rich_text(forced, 100)


def test_rich_columns_all_shows_every_column(long_name_tables):
    from transferbench.leaderboard import DISPLAY_HEADERS

    text = _rich_text(long_name_tables, 250, columns="all")
    assert all(header in text for header in DISPLAY_HEADERS) and "not shown" not in text


def test_submitting_an_identical_setting_again_leaves_the_file_byte_identical(tmp_path):
    from transferbench.evaluation.results import write_results

    first = result("random", 1.0, created_at="2025-01-01T00:00:00+00:00")
    [(path, what)] = write_results([first], tmp_path)
    assert what == "wrote"
    content, mtime = path.read_bytes(), path.stat().st_mtime_ns
    # a rerun: same numbers, another run's provenance (time, command, versions)
    again = result("random", 1.0, created_at="2026-06-01T00:00:00+00:00")
    again.manifest["command"] = "transferbench run -i random --submit"
    assert write_results([again], tmp_path) == [(path, "unchanged")]
    assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime
    changed = result("random", 1.1, created_at="2026-06-01T00:00:00+00:00")  # other scores: other numbers
    assert write_results([changed], tmp_path) == [(path, "replaced")]
    assert json.loads(path.read_text())["manifest"]["created_at"] == "2026-06-01T00:00:00+00:00"


def test_rewriting_a_board_touches_only_changed_files(submissions, tmp_path):
    results, problems = load_results(submissions)
    board = tmp_path / "board"
    first = write_leaderboard(results, board, problems)
    assert first.changed == list(first)
    stamps = {path: path.stat().st_mtime_ns for path in first}
    again = write_leaderboard(results, board, problems)
    assert again.changed == [] and {path: path.stat().st_mtime_ns for path in again} == stamps
    results[0]._local = True  # the board of a user: one row now marked local
    third = write_leaderboard(results, board, problems)
    assert board / "README.md" in third.changed and "(local)" in (board / "README.md").read_text()


def test_a_local_result_sits_beside_the_projects_result_of_the_same_indicator():
    official = result("random", 5.0, seed=2, baseline=True, created_at="2025-01-01T00:00:00+00:00")
    mine = result("random", 5.0, seed=3, baseline=True, created_at="2026-01-01T00:00:00+00:00")
    mine._local = True  # newer, yet it replaces nothing of the project's
    table = next(iter(build_tables([official, mine]).values()))
    assert sorted(table["local"]) == [False, True] and not table.attrs["notes"][1:]
    markdown = render_markdown(build_tables([official, mine]))
    assert "| random (baseline) (local) |" in markdown and "| random (baseline) |" in markdown


# ---------------------------------------------------------------------------------------------
# Result files against the shipped reference (issue 26, item 3): a synthetic reference bundle,
# pinned in its own index.json, stands in for reference/.

REF_TASKS = ["pa", "pb", "pc", "ta", "tb"]
REF_FAMILIES = {"pa": "sentiment", "pb": "sentiment", "pc": "sentiment", "ta": "topic", "tb": "topic"}
REF_SEEDS = [0, 1, 2]
REF_EXCLUDED = {"tb": "own prompt does not beat the majority class"}


def synthetic_reference():
    from transferbench.reference.bundle import Reference

    rng = np.random.default_rng(7)
    per_seed = {s: {t: (None if s == t else [float(v) for v in rng.uniform(0.0, 1.0, len(REF_SEEDS))])
                    for t in REF_TASKS} for s in REF_TASKS}
    mean = {s: {t: (None if v is None else float(np.mean(v))) for t, v in row.items()} for s, row in per_seed.items()}
    info = {"format": 1, "suite": {"name": "syn"}, "backbone": {"backbone": "tiny-bb", "revision": "test"},
            "seeds": REF_SEEDS, "tasks": [{"name": t, "family": REF_FAMILIES[t]} for t in REF_TASKS]}
    tasks = {t: {"admitted": t not in REF_EXCLUDED, "excluded_because": REF_EXCLUDED.get(t, "")} for t in REF_TASKS}
    return Reference(info=info, prompts={"pa/0": np.zeros((1, 2), dtype=np.float32)},
                     predictions={"labels/pa": np.zeros(2, dtype=np.int64)}, tasks=tasks,
                     transfer={"zero_shot": {"mean": mean, "per_seed": per_seed}})


def ref_result(ref, name="skill_overlap", *, seed=0, suite="syn", backbone="tiny-bb", reference="pinned",
               transfer=None, seeds=REF_SEEDS, per_seed="reference", families=REF_FAMILIES, tasks=REF_TASKS,
               excluded=REF_EXCLUDED, created_at="2025-01-01T00:00:00+00:00", baseline=False):
    """A result of the synthetic setting made with `make_result` (its metrics reproduce), with one
    part replaced by an attacker's."""
    frames = ref.per_seed("zero_shot") if per_seed == "reference" else per_seed
    frames = [frame.loc[tasks, tasks] for frame in frames]
    transfer = (ref.matrix("zero_shot") if transfer is None else transfer).loc[tasks, tasks]
    scores = transfer.fillna(0.5) + np.random.default_rng(seed).normal(scale=0.2, size=transfer.shape)
    return make_result(
        scores, transfer, indicator=name, suite=suite, backbone=backbone, transfer_kind="zero_shot",
        seeds=seeds, baseline=baseline, manifest={"created_at": created_at}, n_bootstrap=100, n_permutations=50,
        reference=ref.hash if reference == "pinned" else reference, excluded_targets=excluded, families=families,
        transfer_per_seed=frames,
    )


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """(root, reference, official submissions folder with two valid files) for the synthetic setting."""
    from transferbench.reference import bundle as reference_module

    root = tmp_path / "reference"
    ref = synthetic_reference()
    reference_module.save(ref, root / "syn__tiny-bb", pin=root / "index.json")
    monkeypatch.setattr(reference_module, "shipped_root", lambda: root)
    folder = tmp_path / "submissions"
    write_result(ref_result(ref, "skill_overlap"), folder)
    write_result(ref_result(ref, "random", seed=1, baseline=True), folder)
    return root, ref, folder


def _board(results):
    return render_markdown(build_tables(results))


def _only_problem(folder, name):
    results, problems = load_results(folder)
    assert [(path.name, "\n" in reason) for path, reason in problems] == [(name, False)], problems
    return results, problems[0][1]


def test_valid_files_of_a_shipped_setting_rank_with_seed_resampling(shipped):
    root, ref, folder = shipped
    results, problems = load_results(folder)
    assert problems == [] and sorted(r.indicator.name for r in results) == ["random", "skill_overlap"]
    table = next(iter(build_tables(results).values()))
    assert table.attrs["rank_resampled"] == "targets and seeds"
    assert list(build_tables(results)) == [("syn", "tiny-bb", "zero_shot", ref.hash[:12])]


ATTACKS_ON_THE_REFERENCE = {  # attack 1: parts of the reference a file could replace
    "one_seed": (lambda ref: {"seeds": [0], "per_seed": []}, "its seeds [0] differ"),
    "other_seeds": (lambda ref: {"seeds": [5, 6, 7]}, "its seeds [5, 6, 7] differ"),
    "no_per_seed": (lambda ref: {"per_seed": []}, "carries the transfer of 0 seeds"),
    "seeds_swapped": (lambda ref: {"per_seed": [ref.per_seed("zero_shot")[i] for i in (1, 0, 2)]},
                      "its transfer of seed 0 (transfer_per_seed[0]) differs"),
    "one_family": (lambda ref: {"families": {t: "all" for t in REF_TASKS}}, "its families differ"),
    "no_families": (lambda ref: {"families": {}}, "its families differ"),
    "tasks_reordered": (lambda ref: {"tasks": REF_TASKS[::-1]}, "its tasks differ"),
    "nothing_excluded": (lambda ref: {"excluded": {}}, "its excluded targets differ"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS_ON_THE_REFERENCE))
def test_a_file_differing_from_the_reference_is_named_and_left_out(shipped, attack):
    root, ref, folder = shipped
    before = _board(load_results(folder)[0])
    edit, message = ATTACKS_ON_THE_REFERENCE[attack]
    (folder / "attack.json").write_bytes(result_json(ref_result(ref, "prompt_cosine", seed=2, **edit(ref))))
    results, reason = _only_problem(folder, "attack.json")
    assert message in reason and "shipped reference syn__tiny-bb" in reason, reason
    assert _board(results) == before  # the official rows, their rank intervals and split-seed tau unchanged


NAME_ATTACKS = {  # attack 2: a look-alike setting carrying its own transfer
    "suite_trailing_space": ({"suite": "syn "}, "suite 'syn ' has leading or trailing whitespace"),
    "suite_leading_space": ({"suite": " syn"}, "suite ' syn' has leading or trailing whitespace"),
    "backbone_newline": ({"backbone": "tiny-bb\n"}, "backbone 'tiny-bb\\n' has leading or trailing whitespace"),
    "suite_zero_width_space": ({"suite": "syn\u200b"}, "holds a control or non-printable character"),
    "suite_decomposed_accent": ({"suite": "syn\u0301"}, "is not in Unicode NFC form"),
    "suite_capitalised": ({"suite": "Syn"}, "another spelling of the shipped setting syn__tiny-bb"),
    "backbone_capitalised": ({"backbone": "Tiny-BB"}, "another spelling of the shipped setting syn__tiny-bb"),
    "backbone_slug_twin": ({"backbone": "tiny/bb"}, "another spelling of the shipped setting syn__tiny-bb"),
    "other_suite_official_hash": ({"suite": "mine"}, "names the hash of the shipped reference syn__tiny-bb"),
    "other_suite_hash_prefix": ({"suite": "mine", "reference": "prefix"},
                                "names the hash of the shipped reference syn__tiny-bb"),
}


@pytest.mark.parametrize("attack", sorted(NAME_ATTACKS))
def test_a_look_alike_setting_never_shows_under_the_official_hash(shipped, attack):
    from transferbench.evaluation.results import _name_problem

    root, ref, folder = shipped
    before = _board(load_results(folder)[0])
    edit, message = NAME_ATTACKS[attack]
    own = ref.matrix("zero_shot").fillna(0.4) * 0.5  # its own ground truth
    own_per_seed = [own] * 3
    reference = ref.hash[:12] + "0" * 52 if edit.get("reference") == "prefix" else "pinned"
    names = {key: value for key, value in edit.items() if key in ("suite", "backbone")}
    clean = ref_result(ref, "prompt_cosine", seed=2, transfer=own, per_seed=own_per_seed, reference=reference,
                       **{key: value for key, value in names.items() if not _name_problem(value)})
    data = json.loads(result_json(clean))
    data.update(names)  # and the names make_result refuses
    (folder / "attack.json").write_text(json.dumps(data))
    results, reason = _only_problem(folder, "attack.json")
    assert message in reason, reason
    assert _board(results) == before
    assert all(key.reference != ref.hash[:12] or (key.suite, key.backbone) == ("syn", "tiny-bb")
               for key in build_tables(results))


def test_another_setting_without_the_official_hash_is_its_own_table(shipped):
    root, ref, folder = shipped
    own = ref.matrix("zero_shot").fillna(0.4) * 0.5
    write_result(ref_result(ref, "prompt_cosine", suite="mine", transfer=own, per_seed=[own] * 3, reference=None),
                 folder)
    results, problems = load_results(folder)
    assert problems == []
    assert sorted(build_tables(results)) == [("mine", "tiny-bb", "zero_shot", "none"),
                                             ("syn", "tiny-bb", "zero_shot", ref.hash[:12])]


def test_make_result_refuses_a_name_that_is_not_normalised():
    with pytest.raises(TransferbenchError, match="suite 'sentiment ' has leading or trailing whitespace"):
        result("random", 1.0, suite="sentiment ")


@pytest.mark.parametrize("damage", ["index_deleted", "index_not_json", "index_not_object", "bundle_unpinned",
                                    "manifest_edited", "bundle_deleted"])
def test_a_broken_index_of_the_shipped_references_is_an_error_not_silence(shipped, damage):
    """Attack 3: removing or editing reference/index.json would switch every check off."""
    import shutil

    root, ref, folder = shipped
    index = root / "index.json"
    if damage == "index_deleted":
        index.unlink()
    elif damage == "index_not_json":
        index.write_text("{")
    elif damage == "index_not_object":
        index.write_text("[]")
    elif damage == "bundle_unpinned":
        index.write_text("{}")
    elif damage == "manifest_edited":
        manifest = root / "syn__tiny-bb" / "MANIFEST.json"
        manifest.write_text(manifest.read_text() + " ")
    else:
        shutil.rmtree(root / "syn__tiny-bb")
    with pytest.raises(TransferbenchError) as caught:
        load_results(folder)
    message = str(caught.value)
    assert "\n" not in message and "restore" in message and str(root) in message, message


def test_a_users_results_folder_and_a_root_without_bundles_need_no_index(tmp_path, monkeypatch):
    from transferbench.reference import bundle as reference_module

    empty = tmp_path / "no_references"
    empty.mkdir()
    monkeypatch.setattr(reference_module, "shipped_root", lambda: empty)
    folder = tmp_path / "results" / "submissions"
    write_result(result("random", 1.0), folder)
    results, problems = load_results(folder, local=True)
    assert problems == [] and results[0].local


def test_two_official_files_claiming_one_row_are_an_error_naming_both(submissions):
    """Attack 4: a later `created_at` under another file name no longer replaces the official row."""
    official = next(submissions.glob("*skill_overlap-*.json"))
    hijack = result("skill_overlap", 2.0, seed=9, params={"p": 0.05}, created_at="2030-01-01T00:00:00+00:00")
    (submissions / "zz_hijack.json").write_bytes(result_json(hijack))
    with pytest.raises(TransferbenchError) as caught:
        load_results(submissions)
    message = str(caught.value)
    assert "\n" not in message and official.name in message and "zz_hijack.json" in message, message
    assert "skill_overlap(p=0.05)" in message and "keep one of them" in message
    (submissions / "zz_hijack.json").rename(submissions / "aa_hijack.json")  # nor by sorting first
    with pytest.raises(TransferbenchError, match="aa_hijack.json"):
        load_results(submissions)


def test_a_local_file_claiming_an_official_row_is_shown_beside_it_marked_local(submissions, tmp_path):
    official_results, _ = load_results(submissions)
    mine = tmp_path / "mine"
    hijack = result("skill_overlap", 2.0, seed=9, params={"p": 0.05}, created_at="2030-01-01T00:00:00+00:00")
    (mine / "zz_hijack.json").parent.mkdir()
    (mine / "zz_hijack.json").write_bytes(result_json(hijack))
    local_results, problems = load_results(mine, local=True)
    assert problems == []
    table = next(iter(build_tables(official_results + local_results).values()))
    rows = table[table["indicator"] == "skill_overlap(p=0.05)"]
    assert sorted(rows["local"]) == [False, True]
    official_row = rows[~rows["local"]].iloc[0]
    assert official_row["mean_spearman"] == official_results[
        [r.indicator.name for r in official_results].index("skill_overlap")].metrics.mean_spearman


def test_a_registered_transfer_kind_validates_plots_and_is_labelled_with_no_other_edit(tmp_path, monkeypatch):
    """Transfer kinds are data: result files, plots and tables read a kind's name, label and
    description from `protocol.TRANSFER_KINDS`, so registering one (here in an isolated registry)
    is all a result file of that kind needs; unregistered, it is refused in pydantic's words."""
    from matplotlib.colorbar import Colorbar

    from transferbench.leaderboard import plots
    from transferbench.reference.protocol import TRANSFER_KINDS, TransferKind
    from transferbench.registry import isolated

    labels: list[str] = []
    monkeypatch.setattr(Colorbar, "set_label", lambda self, label, **kwargs: label and labels.append(label))
    data = json.loads(result_json(result("random", 1.0)))
    data["transfer_kind"] = "gap"
    folder = tmp_path / "submissions"
    with isolated(TRANSFER_KINDS):
        TRANSFER_KINDS.add("gap", TransferKind("m(s->t) - m(t->t), balanced accuracy", lambda arm, source: (0.0, 0.0),
                                               label="gap to the target's own prompt"))
        write_result(ResultFile.model_validate(data), folder)
        results, problems = load_results(folder)
        assert problems == [] and [r.transfer_kind for r in results] == ["gap"]
        plots.transfer_heatmap(results)
        assert labels[-1] == "gap to the target's own prompt"
        [table] = build_tables(results).values()
        assert "measured transfer: m(s->t) - m(t->t), balanced accuracy (docs/protocol.md)" in table.attrs["notes"]
    results, problems = load_results(folder)
    assert results == [] and len(problems) == 1
    assert ("transfer_kind: Input should be a transfer kind of a reference protocol (1: zero_shot, zero_shot_relative, "
            "init_gain; 2: zero_shot_gain, zero_shot_relative, init_gain), got 'gap'") in problems[0][1]
    # the built-in kinds' labels are the registry's: zero_shot's names its own formula, not the ratio's
    for kind in ("zero_shot", "zero_shot_relative"):
        plots.transfer_heatmap([result("random", 1.0, kind=kind)])
        assert labels[-1] == TRANSFER_KINDS.get(kind).label
    assert labels[-2].startswith("normalised transfer") and labels[-1].startswith("relative performance")
