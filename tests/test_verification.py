"""Rows that reproduce from code (issue 26, items 2 and 3): every result file records its
indicator's code identity, built-in names belong to built-in code, a board row is (code, params,
setting), and `transferbench leaderboard --verify` re-scores official rows sealed from a
hash-pinned verification input pack and marks them verified only when the scores are the file's."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from transferbench.cli import main
from transferbench.errors import TransferbenchError
from transferbench.evaluation.results import (
    load_results, make_result, read_result, result_json, write_result,
)
from transferbench.leaderboard import build_tables, leaderboard_csv, leaderboard_json, render_markdown
from transferbench.leaderboard.page import render_page
from transferbench.leaderboard import verify as verify_module
from transferbench.leaderboard.verify import (
    SCORE_TOLERANCE, _decode, _encode, pack_files, read_pack, verify_results, write_pack,
)
from transferbench.pipeline.artifacts import PairOutputs
from transferbench.scoring.indicator import (
    TaskView, builtin_class, builtin_code, checked_score, construct_indicator, indicator_code, load_file_class,
)
from transferbench.store import atomic_write_many

REPO = Path(__file__).resolve().parents[1]
TASKS = ["pos_a", "pos_b", "topic_a", "topic_b", "topic_c"]
REFERENCE = "ab" * 32  # a setting without a shipped reference: any hash of its own


class FakeBench:
    """What `pack_files` reads of a benchmark: its setting, task cards and served artifacts."""

    def __init__(self, artifacts: dict[str, dict[str, object]] | None = None):
        rng = np.random.default_rng(0)
        self.suite = SimpleNamespace(name="fake")
        self.backbone_name = "tiny"
        self.seeds = [0, 1]
        self.tasks = {task: SimpleNamespace(family=task.split("_")[0], num_classes=2 + (task == "topic_c"),
                                            label_names=("neg", "pos") if task != "topic_c" else ("a", "b", "c"))
                      for task in TASKS}
        self.artifacts = artifacts if artifacts is not None else {
            "prompts": {task: [rng.normal(size=(4, 8)).astype(np.float32) for _ in self.seeds] for task in TASKS},
            "train_size": {task: 100 + 7 * i for i, task in enumerate(TASKS)},
            "text_embedding": {task: rng.normal(size=8).astype(np.float32) for task in TASKS},
        }
        self.ensured: list[str] = []

    def view(self, artifact: str, task: str):
        return self.artifacts[artifact][task]

    def ensure(self, names):
        self.ensured += list(names)


def views(bench: FakeBench, artifacts) -> dict[str, TaskView]:
    return {task: TaskView(task, spec.family, spec.num_classes, {a: bench.view(a, task) for a in artifacts},
                           spec.label_names) for task, spec in bench.tasks.items()}


def scored(bench: FakeBench, name: str, *, kind: str = "zero_shot", nudge: float = 0.0, code="builtin",
           params: dict | None = None) -> object:
    """The result file of built-in `name` scored on `bench`'s views (`nudge` added to one score)."""
    indicator = construct_indicator(builtin_class(name), params or {})
    seen = views(bench, sorted(set(indicator.requires)))
    scores = pd.DataFrame(np.nan, index=TASKS, columns=TASKS)
    for s in TASKS:
        for t in TASKS:
            if s != t:
                scores.loc[s, t] = checked_score(indicator, seen[s], seen[t])
    scores.loc["pos_a", "pos_b"] += nudge
    transfer = pd.DataFrame(np.random.default_rng(1).uniform(0, 1, (5, 5)), index=TASKS, columns=TASKS)
    return make_result(scores, transfer, indicator=name, suite="fake", backbone="tiny", transfer_kind=kind,
                       seeds=[0, 1], params=params, baseline=indicator.baseline, reference=REFERENCE, n_bootstrap=50,
                       n_permutations=50, code=builtin_code(name) if code == "builtin" else code)


@pytest.fixture()
def packed(tmp_path) -> tuple[FakeBench, Path]:
    bench = FakeBench()
    root = tmp_path / "verification"
    write_pack(bench, REFERENCE, ["prompts", "train_size"], root)
    return bench, root


# ---- code identity --------------------------------------------------------------------------------

def test_the_code_identity_is_the_files_bytes_and_the_class(tmp_path):
    file = tmp_path / "two.py"
    text = textwrap.dedent("""
        from transferbench.scoring.indicator import Indicator

        class First(Indicator):
            def score(self, source, target):
                return 1.0

        class Second(Indicator):
            def score(self, source, target):
                return 1.0
        """)
    file.write_text(text)
    first, second = load_file_class(str(file), "First"), load_file_class(str(file), "Second")
    identity = indicator_code(first)
    assert identity["module"] == "two.py" and identity["qualname"] == "First" and len(identity["sha256"]) == 64
    assert identity["sha256"] != indicator_code(second)["sha256"]  # two classes of one file are two indicators
    file.write_bytes(text.replace("\n", "\r\n").encode())  # a CRLF checkout of the same code
    assert indicator_code(first)["sha256"] == identity["sha256"]
    file.write_text(text.replace("return 1.0", "return 2.0", 1))
    assert indicator_code(first)["sha256"] != identity["sha256"]


def test_a_builtin_names_the_bytes_of_its_module():
    import hashlib

    from transferbench.scoring.indicator import CODE_IDENTITY

    cls = builtin_class("skill_overlap")
    source = Path(__import__(cls.__module__, fromlist=["x"]).__file__).read_bytes()
    expected = hashlib.sha256(b"\0".join([CODE_IDENTITY, b"SkillOverlap", source])).hexdigest()
    assert builtin_code("skill_overlap") == {"sha256": expected, "qualname": "SkillOverlap",
                                             "module": "transferbench.indicators.skill_overlap"}
    assert builtin_code("logme")["sha256"] != builtin_code("leep")["sha256"]  # one module, two classes
    assert builtin_code("not_a_builtin") is None


def test_a_result_file_records_its_code_and_an_old_one_without_it_still_loads(tmp_path):
    result = scored(FakeBench(), "random")
    assert json.loads(result_json(result))["indicator"]["code"] == builtin_code("random")
    old = scored(FakeBench(), "random", code=None)
    assert "code" not in json.loads(result_json(old))["indicator"]  # byte-identical to files written before
    assert read_result(write_result(old, tmp_path / "old")).indicator.code is None


def test_a_file_naming_a_builtin_with_other_code_is_marked_unverified_wherever_it_shows(tmp_path):
    folder = tmp_path / "submissions"
    forged = scored(FakeBench(), "data_size", code={"sha256": "0" * 64, "qualname": "Mine", "module": "mine.py"})
    forged.indicator.name = "random"
    (folder / "zz_hijack.json").parent.mkdir(parents=True)
    (folder / "zz_hijack.json").write_bytes(result_json(forged))
    (result,), problems = load_results(folder)
    assert not problems and not result.verification.verified  # marked however the board is built
    why = "it names the built-in indicator 'random', but its code (mine.py Mine, sha256 000000000000) is not this version's"
    assert result.verification.why.startswith(why)
    assert "| random (baseline) (unverified) |" in render_markdown(build_tables([result]))
    verify_results([result], tmp_path / "verification")
    assert result.verification.why.startswith(why) and not result.verification.rescored
    # beside the official row of that name it is a second row under one label: the board says so
    write_result(scored(FakeBench(), "random"), folder)
    with pytest.raises(TransferbenchError, match="both name their row random of .* but carry different code"):
        load_results(folder)


def test_a_run_refuses_other_code_under_a_builtin_name_before_computing(tmp_path, capsys):
    """The `--submit` overwrite of issue 26: a class naming itself `random` never writes a result."""
    import transferbench

    file = tmp_path / "impostor.py"
    file.write_text(textwrap.dedent("""
        from transferbench.scoring.indicator import Indicator

        class Impostor(Indicator):
            registered_name = "random"
            baseline = True

            def score(self, source, target):
                return 1.0
        """))
    with pytest.raises(TransferbenchError, match="indicator 'random' is the name of a built-in indicator, but "
                                                 r"Impostor \(impostor.py\) is other code; give your class a name of its own"):
        transferbench.run(indicators=[f"{file}:Impostor"], submit=True, submissions_dir=tmp_path / "submissions")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["impostor.py"]


def test_a_builtins_code_under_another_name_is_left_out(tmp_path):
    folder = tmp_path / "submissions"
    copy = scored(FakeBench(), "random")
    copy.indicator.name = "my_great_indicator"
    write_result(copy, folder)
    results, problems = load_results(folder)
    assert not results and "its code is the built-in indicator 'random'" in problems[0][1]


def test_two_official_files_of_one_code_and_params_are_one_row_whatever_their_names(tmp_path):
    folder = tmp_path / "submissions"
    mine = {"sha256": "1" * 64, "qualname": "Mine", "module": "mine.py"}
    for name in ("mine", "renamed"):
        result = scored(FakeBench(), "random", code=mine)
        result.indicator.name = name
        write_result(result, folder)
    with pytest.raises(TransferbenchError, match="both claim the row mine of suite 'fake'.*named mine and renamed"):
        load_results(folder)


def test_two_official_files_of_one_name_with_other_code_are_an_error(tmp_path):
    folder = tmp_path / "submissions"
    for digest, where in (("1", "a"), ("2", "b")):
        result = scored(FakeBench(), "random", code={"sha256": digest * 64, "qualname": "Mine", "module": "mine.py"})
        result.indicator.name = "mine"
        (folder / where).mkdir(parents=True)
        write_result(result, folder / where)
    with pytest.raises(TransferbenchError, match="both name their row mine of .* but carry different code"):
        load_results(folder)


# ---- the pack ---------------------------------------------------------------------------------------

def test_a_pack_serves_exactly_what_the_views_held(packed):
    bench, root = packed
    pack = read_pack(root, "fake__tiny")
    assert pack.reference == REFERENCE and pack.tasks == TASKS and set(pack.artifacts) == {"prompts", "train_size"}
    again = pack.views(["prompts", "train_size"])
    for task in TASKS:
        original = bench.view("prompts", task)
        assert [a.dtype for a in again[task].prompts] == [np.float32] * 2
        assert all(np.array_equal(a, b) for a, b in zip(again[task].prompts, original))
        assert again[task].train_size == bench.view("train_size", task)
        assert (again[task].family, again[task].num_classes, again[task].label_names) == (
            bench.tasks[task].family, bench.tasks[task].num_classes, bench.tasks[task].label_names)
    assert json.loads((root / "index.json").read_text()) == {"fake__tiny": pack.digest}


def test_every_kind_of_served_value_round_trips_exactly():
    rng = np.random.default_rng(3)
    value = {"s": [PairOutputs(rng.normal(size=(3, 2)).astype(np.float32), rng.uniform(size=(3, 2)),
                               np.arange(3, dtype=np.int64))],
             "t": [("text", "pair", "label")], "n": 3, "x": 0.25, "none": None, "flag": True,
             "ranks": rng.permutation(12).reshape(3, 4).astype(np.int64), "mask": np.array([True, False])}
    arrays = {}
    back = _decode(json.loads(json.dumps(_encode(value, arrays, "test"))), arrays)
    assert isinstance(back["s"][0], PairOutputs) and back["t"] == [("text", "pair", "label")]
    for a, b in zip(back["s"][0], value["s"][0]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert back["ranks"].dtype == np.int64 and np.array_equal(back["ranks"], value["ranks"])
    assert back["mask"].dtype == bool and {k: back[k] for k in ("n", "x", "none", "flag")} == {
        "n": 3, "x": 0.25, "none": None, "flag": True}
    with pytest.raises(TransferbenchError, match="a value of type object cannot go into a verification pack"):
        _encode(object(), {}, "test")


def test_writing_an_unchanged_pack_again_writes_nothing_and_a_new_artifact_keeps_the_others(packed):
    bench, root = packed
    assert pack_files(bench, REFERENCE, ["prompts", "train_size"], root) == {}
    atomic_write_many(pack_files(bench, REFERENCE, ["text_embedding"], root))
    assert set(read_pack(root, "fake__tiny").artifacts) == {"prompts", "train_size", "text_embedding"}
    # a pack of another reference starts again
    atomic_write_many(pack_files(bench, "cd" * 32, ["train_size"], root))
    assert set(read_pack(root, "fake__tiny").artifacts) == {"train_size"}


def test_an_artifact_over_the_budget_is_left_out_and_says_why(packed, monkeypatch):
    bench, root = packed
    monkeypatch.setattr(verify_module, "ARTIFACT_BUDGET", 100)
    atomic_write_many(pack_files(bench, REFERENCE, ["text_embedding"], root))
    pack = read_pack(root, "fake__tiny")
    assert "text_embedding" not in pack.artifacts
    assert pack.left_out["text_embedding"].startswith("left out of the pack: 0 MB of arrays, over its 0 MB budget")


@pytest.mark.parametrize("edit", ["pack.json", "prompts.safetensors", "repinned_array", "index.json"])
def test_an_edited_pack_is_one_error_line(packed, edit):
    bench, root = packed
    folder = root / "fake__tiny"
    if edit == "pack.json":
        info = json.loads((folder / "pack.json").read_text())
        info["artifacts"]["train_size"]["pos_a"] = 10**6
        (folder / "pack.json").write_text(json.dumps(info))
        expected = "pack.json does not hash to its pin"
    elif edit == "prompts.safetensors":
        data = bytearray((folder / "prompts.safetensors").read_bytes())
        data[-1] ^= 1
        (folder / "prompts.safetensors").write_bytes(bytes(data))
        expected = "prompts.safetensors does not hash to its pin in pack.json"
    elif edit == "repinned_array":  # an edited array, with every hash pinned again: its key still names the old content
        from safetensors.numpy import load, save

        arrays = load((folder / "prompts.safetensors").read_bytes())
        key = sorted(arrays)[0]
        arrays[key] = arrays[key] + 1
        data = save(arrays)
        (folder / "prompts.safetensors").write_bytes(data)
        info = json.loads((folder / "pack.json").read_text())
        info["files"]["prompts.safetensors"] = __import__("hashlib").sha256(data).hexdigest()
        raw = json.dumps(info).encode()
        (folder / "pack.json").write_bytes(raw)
        (root / "index.json").write_text(json.dumps({"fake__tiny": __import__("hashlib").sha256(raw).hexdigest()}))
        expected = "is not the content its key names"
    else:
        (root / "index.json").write_text("{broken")
        expected = "index.json: not valid JSON"
    with pytest.raises(TransferbenchError, match=expected) as info:
        read_pack(root, "fake__tiny")
    assert "\n" not in str(info.value)
    result = scored(bench, "data_size")
    verify_results([result], root)
    assert not result.verification.verified and expected.split(" (")[0] in result.verification.why


# ---- verifying rows -----------------------------------------------------------------------------------

def test_rows_whose_scores_reproduce_from_the_pack_are_verified(packed):
    bench, root = packed
    results = [scored(bench, name, kind=kind) for name in ("random", "same_family", "label_overlap", "data_size",
                                                          "embedding_similarity") for kind in ("zero_shot", "init_gain")]
    results.append(scored(bench, "embedding_similarity", params={"measure": "euclidean"}))
    found = verify_results(results, root)
    assert len(found) == len(results)
    for result in results:
        assert result.verification.verified, (result.indicator.label(), result.verification.why)
        assert result.verification.why.startswith("re-scored from pack fake__tiny (")
        assert "all 20 scores equal the file's exactly" in result.verification.why


def test_a_score_that_differs_from_the_recomputed_one_is_not_verified(packed):
    bench, root = packed
    edited, within = scored(bench, "data_size", nudge=1e-6), scored(bench, "embedding_similarity", nudge=1e-13)
    verify_results([edited, within], root)
    assert not edited.verification.verified and edited.verification.rescored
    assert "1 of 20 scores differ from the file's (first: pos_a -> pos_b: file 100.000001, re-scored 100.0)" in (
        edited.verification.why)
    # the last bits of a float64 dot product depend on the CPU's BLAS kernels: within the tolerance
    assert within.verification.verified and re.search(r"equal the file's within [0-9.]+e-1[34]$", within.verification.why)
    assert SCORE_TOLERANCE < 1e-6


def test_rows_that_cannot_be_re_scored_say_why(packed, tmp_path):
    bench, root = packed
    atomic_write_many(pack_files(bench, REFERENCE, [], root, left_out={"text_embedding": "left out: too big"}))
    cases = {
        "no_code": scored(bench, "random", code=None),
        "not_builtin": scored(bench, "random", code={"sha256": "3" * 64, "qualname": "Mine", "module": "mine.py"}),
        "left_out": scored(bench, "task_embedding"),
        "local": scored(bench, "random"),
    }
    cases["not_builtin"].indicator.name = "mine"
    cases["local"]._local = True
    found = verify_results(list(cases.values()), root)
    assert cases["local"].verification is None and id(cases["local"]) not in found
    assert "records no code identity" in cases["no_code"].verification.why
    assert "its code (mine.py Mine, sha256 333333333333) is not a built-in indicator" in (
        cases["not_builtin"].verification.why)
    assert cases["left_out"].verification.why == (
        "inputs not in the verification pack: text_embedding (left out: too big)")
    assert not any(v.verified or v.rescored for v in found.values())
    other = scored(FakeBench(), "random")
    verify_results([other], tmp_path / "nowhere")
    assert other.verification.why == f"no verification pack for fake__tiny in {tmp_path / 'nowhere'}"
    atomic_write_many(pack_files(bench, "cd" * 32, [], root))
    verify_results([other], root)
    assert "holds the inputs of reference cdcdcdcdcdcd, not of abababababab" in other.verification.why


def test_a_plugin_failing_on_the_packs_inputs_is_not_verified(packed):
    bench, root = packed
    result = scored(bench, "data_size")
    atomic_write_many(pack_files(FakeBench({"train_size": {t: "many" for t in TASKS}}), REFERENCE, ["train_size"], root))
    verify_results([result], root)
    assert result.verification.rescored and not result.verification.verified
    assert result.verification.why.startswith("re-scoring it failed: indicator 'data_size' on pair pos_a -> pos_b raised")


def test_the_board_marks_each_row_and_says_why_one_is_not_verified(packed):
    bench, root = packed
    verified, unverified = scored(bench, "random"), scored(bench, "data_size", nudge=1.0)
    unchecked = scored(bench, "same_family")
    unchecked._local = True
    verify_results([verified, unverified], root)
    tables = build_tables([verified, unverified, unchecked])
    (table,) = tables.values()
    assert dict(zip(table["indicator"], table["verified"])) == {"random": True, "data_size": False, "same_family": None}
    markdown = render_markdown(tables)
    assert "| random (baseline) ✓ |" in markdown and "| data_size (baseline) (unverified) |" in markdown
    assert "| same_family (baseline) (local) |" in markdown
    assert "Note: not verified (data_size): re-scored from pack fake__tiny" in markdown
    board = leaderboard_json([verified, unverified, unchecked])
    rows = {row["indicator"]: row["verified"] for row in board["tables"][0]["rows"]}
    assert rows == {"random": True, "data_size": False, "same_family": None}
    assert "verified" in leaderboard_csv(tables).splitlines()[0].split(",")
    page = render_page(tables, {})
    assert '<span class="mark">✓</span>' in page and '<span class="mark">(unverified)</span>' in page


# ---- the command line -----------------------------------------------------------------------------------

def test_leaderboard_verify_marks_the_rows_and_fails_on_a_row_that_does_not_reproduce(packed, tmp_path, capsys):
    bench, root = packed
    folder = tmp_path / "submissions"
    for name in ("random", "data_size", "embedding_similarity"):
        write_result(scored(bench, name), folder)
    args = ["leaderboard", "--submissions-dir", str(folder), "--format", "json"]
    assert main([*args, "--verify"]) == 0
    out, err = capsys.readouterr()
    assert {row["indicator"]: row["verified"] for row in json.loads(out)["tables"][0]["rows"]} == {
        "random": True, "data_size": True, "embedding_similarity": True}
    assert "re-scoring data_size on 20 pairs from pack fake__tiny" in err
    assert f"verified 3 of 3 official result files from {root}" in err
    assert main(args) == 0  # without --verify nothing is re-scored: no mark
    assert {row["verified"] for row in json.loads(capsys.readouterr()[0])["tables"][0]["rows"]} == {None}

    write_result(scored(bench, "data_size", nudge=0.5), folder)  # consistent metrics, other scores
    assert main([*args, "--verify"]) == 1
    out, err = capsys.readouterr()
    rows = {row["indicator"]: row["verified"] for row in json.loads(out)["tables"][0]["rows"]}
    assert rows["data_size"] is False and rows["random"] is True
    assert "1 re-scored and did not reproduce" in err
    board = tmp_path / "board"
    assert main(["leaderboard", "--submissions-dir", str(folder), "--write", "--leaderboard-dir", str(board)]) == 0
    capsys.readouterr()
    readme = (board / "README.md").read_text()
    assert "random (baseline) ✓" in readme and "data_size (baseline) (unverified)" in readme


@pytest.mark.integration
def test_the_official_board_verifies_from_the_committed_pack(monkeypatch, capsys):
    """CI's `leaderboard --verify` over the committed submissions/ with the committed pack: every
    official row whose inputs the pack holds is re-scored sealed and reproduces its file; every
    other one says which inputs the pack leaves out and why; none is re-scored and differs."""
    monkeypatch.chdir(REPO)
    assert main(["leaderboard", "--verify", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    board = json.loads(out)
    assert not board["skipped"], board["skipped"]
    rows = [row for table in board["tables"] for row in table["rows"]]
    notes = [note for table in board["tables"] for note in table["notes"] if note.startswith("not verified")]
    verified = {row["indicator"] for row in rows if row["verified"]}
    assert {"random", "same_family", "label_overlap", "data_size", "embedding_similarity"} <= verified
    assert all(row["verified"] is not None for row in rows)
    assert all(": inputs not in the verification pack: " in note for note in notes), notes
    pack = read_pack(REPO / "verification", "default__minilm")
    assert (REPO / "verification" / "default__minilm").stat() and pack.reference == json.loads(
        (REPO / "reference" / "index.json").read_text())["default__minilm"]
    assert sum(path.stat().st_size for path in (REPO / "verification").rglob("*") if path.is_file()) < 20 * 2**20
    assert f"verified {sum(1 for row in rows if row['verified'])} of {len(rows)} official result files" in err


def test_a_submitted_run_records_its_inputs_and_its_rows_verify(tmp_path, monkeypatch, cache, tiny_backbone,
                                                                  tiny_suite, capsys):
    """`run --submit` writes the inputs it scored from into verification/ with the result files;
    its board is verified; a rerun leaves the pack untouched; `leaderboard --verify` re-scores every
    row from it."""
    monkeypatch.chdir(tmp_path)
    names = ["random", "data_size", "embedding_similarity", "activation_overlap", "skill_overlap"]
    args = ["run", "--submit", "--suite", str(tiny_suite), "--backbone", str(tiny_backbone), "--transfer", "zero_shot"]
    for name in names:
        args += ["--indicator", name]
    assert main(args) == 0
    out, err = capsys.readouterr()
    (folder,) = [path for path in (tmp_path / "verification").iterdir() if path.is_dir()]
    pack = read_pack(tmp_path / "verification", folder.name)
    assert set(pack.artifacts) == {"prompts", "train_size", "mask_activations", "skill_scores"}
    for name in names:
        code = json.loads(next((tmp_path / "submissions").glob(f"*__{name}__*.json")).read_text())["indicator"]["code"]
        assert code == builtin_code(name)
    assert f"verified {len(names)} of {len(names)} official result files" in err
    assert all(f"{name} (baseline) ✓" in out or f"{name} ✓" in out for name in names)

    files = sorted(p for p in (tmp_path / "verification").rglob("*") if p.is_file())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    assert main(args) == 0  # the same setting again: the pack is left untouched
    capsys.readouterr()
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before

    assert main(["leaderboard", "--verify", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr()[0])["tables"][0]["rows"]
    assert {row["indicator"]: row["verified"] for row in rows} == {name: True for name in names}
