"""The content-addressed artifact store: atomic writes, corruption detection, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from transferbench.cli import main
from transferbench.errors import TransferbenchError
from transferbench.store import ArtifactStore, content_key


def test_key_depends_on_every_input_and_not_on_order():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})


def test_saved_artifact_loads_back_and_leaves_no_temporary_file(tmp_path):
    store = ArtifactStore(tmp_path)
    key = store.key("stage", {"k": 1})
    assert store.load("stage", key) is None
    store.save("stage", key, {"x": torch.arange(3)})
    assert torch.equal(store.load("stage", key)["x"], torch.arange(3))
    assert not list((tmp_path / "stage").glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_artifact_is_detected_with_a_warning(tmp_path, damage):
    store = ArtifactStore(tmp_path)
    key = store.key("stage", {"k": 1})
    store.save("stage", key, {"x": torch.ones(100)})
    path = next((tmp_path / "stage").glob("*.pt"))
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "flip": raw[:-5] + b"XXXXX", "garbage": b"nonsense"}[damage])
    with pytest.warns(UserWarning, match="corrupt cache file"):
        assert store.load("stage", key) is None  # so the caller computes it again


def test_cache_command_shows_and_clears_stages(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path))
    store = ArtifactStore()
    store.save("prompts", "a", {"x": torch.ones(2)})
    store.save("transfer", "b", {"x": torch.ones(2)})
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert "prompts" in out and "transfer" in out
    assert main(["cache", "--clear", "transfer"]) == 0
    assert not (tmp_path / "transfer").exists() and (tmp_path / "prompts").exists()
    assert main(["cache", "--clear", "nope"]) == 2
    with pytest.raises(TransferbenchError, match="no cache stage"):
        store.clear("../etc")


def _run(args, cwd, env):
    return subprocess.Popen([sys.executable, "-m", "transferbench.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_run_resumes_without_recomputing_and_gives_same_results(tmp_path, tiny_backbone):
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks", steps=40)
    args = ["run", "--submit", "-i", "skill_overlap", "--suite", str(suite), "--backbone", str(tiny_backbone),
            "--transfer", "zero_shot"]
    env = {**os.environ, "TRANSFERBENCH_CACHE": str(tmp_path / "cache")}
    (tmp_path / "killed").mkdir()
    process = _run(args, tmp_path / "killed", env)
    prompts = tmp_path / "cache" / "prompts"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(prompts.glob("*.pt"))) < 2 and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.name: p.read_bytes() for p in prompts.glob("*.pt")}
    assert 1 <= len(finished) < 4, "the kill should land while prompts are being trained"
    assert not list((tmp_path / "killed" / "submissions").glob("*.json")) if (tmp_path / "killed" / "submissions").exists() else True

    (tmp_path / "resumed").mkdir()
    resumed = _run(args, tmp_path / "resumed", env)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    for name, content in finished.items():  # finished artifacts were reused, not rewritten
        assert (prompts / name).read_bytes() == content
    assert not list((tmp_path / "cache").rglob("*.tmp"))

    (tmp_path / "clean").mkdir()
    clean_env = {**env, "TRANSFERBENCH_CACHE": str(tmp_path / "clean_cache")}
    clean = _run(args, tmp_path / "clean", clean_env)
    assert clean.wait(timeout=600) == 0, clean.stderr.read()
    resumed_result = json.loads(next((tmp_path / "resumed" / "submissions").glob("*.json")).read_text())
    clean_result = json.loads(next((tmp_path / "clean" / "submissions").glob("*.json")).read_text())
    assert resumed_result["scores"] == clean_result["scores"]
    assert resumed_result["transfer"] == clean_result["transfer"]
    assert resumed_result["metrics"] == clean_result["metrics"]


def test_sigterm_stops_a_run_with_one_line_and_143_and_the_rerun_resumes(tmp_path, tiny_backbone):
    """SIGTERM (a scheduler's stop) ends a run as Ctrl-C does: one line, exit status 143, every
    finished artifact kept whole; the next run reuses them and gives the same numbers as a run
    never stopped."""
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks", steps=20)
    args = ["run", "--submit", "-i", "skill_overlap", "--suite", str(suite), "--backbone", str(tiny_backbone),
            "--transfer", "zero_shot"]
    env = {**os.environ, "TRANSFERBENCH_CACHE": str(tmp_path / "cache")}
    (tmp_path / "stopped").mkdir()
    process = _run(args, tmp_path / "stopped", env)
    prompts = tmp_path / "cache" / "prompts"
    deadline = time.time() + 300
    while time.time() < deadline and not list(prompts.glob("*.pt")) and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert err.splitlines()[-1] == "interrupted; finished artifacts are cached and will be reused", err
    assert "Traceback" not in err
    finished = {p.name: p.read_bytes() for p in prompts.glob("*.pt")}
    assert 1 <= len(finished) < 4, "SIGTERM should land while prompts are being trained"
    assert not list((tmp_path / "cache").rglob("*.tmp"))

    (tmp_path / "resumed").mkdir()
    resumed = _run(args, tmp_path / "resumed", env)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    for name, content in finished.items():  # finished artifacts were reused, not rewritten
        assert (prompts / name).read_bytes() == content
    (tmp_path / "clean").mkdir()
    clean = _run(args, tmp_path / "clean", {**env, "TRANSFERBENCH_CACHE": str(tmp_path / "clean_cache")})
    assert clean.wait(timeout=600) == 0, clean.stderr.read()
    resumed_result = json.loads(next((tmp_path / "resumed" / "submissions").glob("*.json")).read_text())
    clean_result = json.loads(next((tmp_path / "clean" / "submissions").glob("*.json")).read_text())
    for field in ("scores", "transfer", "metrics"):
        assert resumed_result[field] == clean_result[field]


def test_two_runs_on_one_store_at_once_do_not_corrupt_it(tmp_path, tiny_backbone):
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks", steps=6)
    args = ["run", "--submit", "-i", "embedding_similarity", "--suite", str(suite), "--backbone", str(tiny_backbone),
            "--transfer", "zero_shot"]
    env = {**os.environ, "TRANSFERBENCH_CACHE": str(tmp_path / "cache")}
    folders = [tmp_path / "first", tmp_path / "second"]
    for folder in folders:
        folder.mkdir()
    processes = [_run(args, folder, env) for folder in folders]
    for process in processes:
        assert process.wait(timeout=600) == 0, process.stderr.read()
    results = [json.loads(next((f / "submissions").glob("*.json")).read_text()) for f in folders]
    assert results[0]["scores"] == results[1]["scores"] and results[0]["transfer"] == results[1]["transfer"]
    store = ArtifactStore(tmp_path / "cache")
    for path in (tmp_path / "cache").rglob("*.pt"):  # every artifact left behind is whole
        assert store.load(path.parent.name, path.stem) is not None
    assert not list((tmp_path / "cache").rglob("*.tmp"))


KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from transferbench import store
store.os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # dies after staging, before the rename
store.atomic_write_bytes(Path(sys.argv[1]), b"new")
"""


def test_a_write_removes_temporaries_that_a_killed_writer_left(tmp_path):
    """SIGKILL mid-write skips every cleanup and leaves `.NAME.HOST-PID.*.tmp` beside the file; the
    next write of that file removes it. Temporaries of live processes (this one) and of other hosts
    sharing the folder are left alone."""
    import socket

    from transferbench.store import atomic_write_bytes

    target = tmp_path / "result.json"
    child = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(target)])
    assert child.returncode == -signal.SIGKILL
    [left] = tmp_path.glob(".result.json.*.tmp")
    assert left.read_bytes() == b"new" and not target.exists()
    live = tmp_path / f".result.json.{socket.gethostname()}-{os.getpid()}.abcd.tmp"
    other_host = tmp_path / ".result.json.elsewhere-1.abcd.tmp"  # pid 1 lives, but on another host
    live.write_bytes(b""), other_host.write_bytes(b"")
    atomic_write_bytes(target, b"final")
    assert target.read_bytes() == b"final"
    assert not left.exists() and live.exists() and other_host.exists()


def test_every_store_stage_is_the_folder_of_a_declared_artifact():
    """`store.STAGES` (what `cache --clear` accepts) is checked against the artifact declarations:
    each stage but the downloads' folders holds some artifact, and each artifact's stage is one."""
    from transferbench.pipeline.artifacts import ARTIFACTS
    from transferbench.store import DOWNLOAD_FOLDERS, STAGES

    declared = {spec.stage for _, spec in ARTIFACTS.items() if spec.stage is not None}
    assert declared == set(STAGES) - set(DOWNLOAD_FOLDERS)
