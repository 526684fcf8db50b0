"""A reference build carried across sessions in shards (issue 24, item 7): an interrupted build
exports what it finished, a build in a fresh cache imports it and computes only the rest, to the
same bundle as an uninterrupted build; a damaged shard is one error line and imports nothing; a
shard of another precision is not found, and status and the build say so in one line."""

from __future__ import annotations

import json
import zipfile

import pytest

from transferbench.cli import main
from transferbench.errors import TransferbenchError
from transferbench.reference import bundle as reference
from transferbench.reference import shards
from transferbench.store import ArtifactStore

ENTRIES = 4 + 4 + 16 + 16  # the tiny suite, one seed: prompts, probes, zero-shot and init cells (null source too)


class Saves:
    """In the block, counts the entries the store writes (each one computed), and raises `error`
    instead of the write after `stop_after` of them: a build interrupted with that many finished."""

    def __init__(self, stop_after: int | None = None, error: BaseException | None = None):
        self.saved: list[tuple[str, str]] = []
        self.stop_after, self.error = stop_after, error
        self.patch = pytest.MonkeyPatch()

    def __enter__(self) -> "Saves":
        original = ArtifactStore.save

        def save(store, stage, key, artifact):
            if self.stop_after is not None and len(self.saved) >= self.stop_after:
                raise self.error or KeyboardInterrupt()
            original(store, stage, key, artifact)
            self.saved.append((stage, key))

        self.patch.setattr(ArtifactStore, "save", save)
        return self

    def __exit__(self, *exc) -> None:
        self.patch.undo()


def build(capsys, suite, backbone, root, *extra):
    code = main([str(a) for a in ("reference", "build", "--suite", suite, "--backbone", backbone, "--root", root,
                                  "--unit-threads", 1, "--progress", "plain", *extra)])
    out, err = capsys.readouterr()
    return code, out, err


def shard_command(capsys, action, suite, backbone, root, *extra):
    code = main([str(a) for a in ("reference", "shards", action, "--suite", suite, "--backbone", backbone,
                                  "--root", root, "--unit-threads", 1, *extra)])
    out, err = capsys.readouterr()
    return code, out, err


def use_cache(monkeypatch, folder):
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(folder))
    return folder


def stored(cache):
    return sorted(p.relative_to(cache) for stage in ("prompts", "probe", "transfer") for p in (cache / stage).glob("*.pt"))


def folder_of(root, backbone):
    return shards.default_folder(root, "tiny", str(backbone))


@pytest.mark.parametrize("error, code", [(KeyboardInterrupt(), 130), (TransferbenchError("disk on fire"), 2)])
def test_an_interrupted_build_exports_what_it_finished_then_stops_as_it_would(tmp_path, monkeypatch, capsys, cache,
                                                                              tiny_backbone, tiny_suite, error, code):
    with Saves(stop_after=6, error=error) as saves:
        got, out, err = build(capsys, tiny_suite, tiny_backbone, tmp_path / "refs")
    assert got == code, err
    last = err.strip().splitlines()[-1]  # after the progress lines, the run's one last line
    assert last.startswith("interrupted") if code == 130 else last == "error: disk on fire", err
    (shard,) = shards.read_shards(folder_of(tmp_path / "refs", tiny_backbone))
    assert sorted(shard.entries) == sorted(saves.saved) and len(saves.saved) == 6
    assert f"exported 6 finished entries to shard {shard.folder}" in out
    assert shard.record["counts"] == {"prompts": 4, "probe": 2}
    assert shard.record["setting"]["precision"] == shard.record["machine"]["precision"]["precision"]
    assert set(shard.check()) == set(saves.saved)  # every entry as the store holds it
    assert not (tmp_path / "refs" / reference.bundle_name("tiny", str(tiny_backbone))).exists()


def test_a_build_in_a_fresh_cache_continues_from_the_shards_to_the_uninterrupted_bundle(tmp_path, monkeypatch, capsys,
                                                                                        tiny_backbone, tiny_suite):
    root = tmp_path / "refs"
    # session 1: 12 entries finished (prompts, probes, one zero-shot row), then Ctrl-C
    use_cache(monkeypatch, tmp_path / "cache1")
    with Saves(stop_after=12):
        assert build(capsys, tiny_suite, tiny_backbone, root)[0] == 130
    # session 2, another machine: an empty cache, the committed shard
    cache2 = use_cache(monkeypatch, tmp_path / "cache2")
    with Saves() as saves:
        code, out, err = build(capsys, tiny_suite, tiny_backbone, root)
    assert code == 0, err
    first, second = shards.read_shards(folder_of(root, tiny_backbone))
    assert f"shard {first.id} (" in out and "12 of its 12 entries are this build's; 12 imported" in out
    assert len(saves.saved) == ENTRIES - 12 and not set(saves.saved) & set(first.entries)  # only the rest computed
    assert len(second.entries) == ENTRIES - 12 and len(stored(cache2)) == ENTRIES
    name = reference.bundle_name("tiny", str(tiny_backbone))
    resumed = reference.read_bundle(root / name, None)
    assert [(s["id"], s["entries"]) for s in resumed.info["build"]["shards"]] == [(first.id, 12), (second.id, ENTRIES - 12)]
    assert resumed.info["build"]["shards"][0]["precision"]["precision"] == resumed.info["build"]["precision"]["precision"]
    # one sitting, no shards: the same reference
    use_cache(monkeypatch, tmp_path / "cache3")
    assert build(capsys, tiny_suite, tiny_backbone, tmp_path / "whole", "--no-shards")[0] == 0
    whole = reference.read_bundle(tmp_path / "whole" / name, None)
    assert "shards" not in whole.info["build"] and not (tmp_path / "whole" / "shards").exists()
    assert resumed.hash == whole.hash


def _rezip(archive, change):
    with zipfile.ZipFile(archive) as zipped:
        files = {name: zipped.read(name) for name in zipped.namelist()}
    change(files)
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, data in files.items():
            zipped.writestr(name, data)


def _flip_last_byte(files):
    name = sorted(files)[-1]
    files[name] = files[name][:-1] + bytes([files[name][-1] ^ 1])


DAMAGE = {  # what is done to the shard, what the line says, the file it names
    "an entry changed": (lambda shard: _rezip(shard / shards.ARCHIVE, _flip_last_byte), "does not match its sha256",
                         shards.ARCHIVE),
    "an entry removed": (lambda shard: _rezip(shard / shards.ARCHIVE, lambda f: f.pop(sorted(f)[0])), "is missing",
                         shards.ARCHIVE),
    "a truncated archive": (lambda shard: (shard / shards.ARCHIVE).write_bytes((shard / shards.ARCHIVE).read_bytes()[:500]),
                            "cannot be read", shards.ARCHIVE),
    "a manifest edited": (lambda shard: (shard / shards.MANIFEST).write_text(
        (shard / shards.MANIFEST).read_text().replace('"key":"', '"key":"../', 1)), "is not a stage, a 20-digit hex key",
        shards.MANIFEST),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_shard_is_one_error_line_and_nothing_is_imported(tmp_path, monkeypatch, capsys, tiny_backbone,
                                                                   tiny_suite, damage):
    root = tmp_path / "refs"
    use_cache(monkeypatch, tmp_path / "cache1")
    with Saves(stop_after=5):
        assert build(capsys, tiny_suite, tiny_backbone, root)[0] == 130
    with Saves(stop_after=3):
        assert build(capsys, tiny_suite, tiny_backbone, root)[0] == 130  # a second shard, after the good first one
    good, damaged = (shard.folder for shard in shards.read_shards(folder_of(root, tiny_backbone)))
    act, named, file = DAMAGE[damage]
    act(damaged)
    fresh = use_cache(monkeypatch, tmp_path / "cache2")
    code, out, err = build(capsys, tiny_suite, tiny_backbone, root)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert str(damaged / file) in lines[0] and named in lines[0] and "restore the shard" in lines[0], lines[0]
    assert stored(fresh) == []  # neither imported (not even the good shard's entries) nor computed


def test_a_shard_of_another_precision_is_not_found_and_status_and_the_build_say_so(tmp_path, monkeypatch, capsys,
                                                                                  cache, tiny_backbone, tiny_suite):
    root = tmp_path / "refs"
    with Saves(stop_after=4):
        assert build(capsys, tiny_suite, tiny_backbone, root, "--precision", "fp32")[0] == 130
    (shard,) = shards.read_shards(folder_of(root, tiny_backbone))
    expected = (f"shard {shard.id} ({shard.where()}): none of its 4 entries is one this build needs: it ran with "
                "precision fp32 and train_attention sdpa where this build has bf16 and eager (give --precision fp32 "
                "--train-attention sdpa)")  # `auto` kernels differ by precision on a CPU (kernels.AUTO_KERNELS)
    code, out, err = shard_command(capsys, "status", tiny_suite, tiny_backbone, root, "--precision", "bf16")
    assert code == 0, err
    (line,) = [line for line in out.splitlines() if line.startswith("shard ")]
    assert line.startswith(expected + ";"), line
    assert f"0 of {ENTRIES} entries done" in out
    code, out, err = shard_command(capsys, "status", tiny_suite, tiny_backbone, root, "--precision", "fp32")
    assert "4 of its 4 entries are this build's" in out and f"4 of {ENTRIES} entries done" in out
    # the build in bf16 says it in one line too, and computes its own
    use_cache(monkeypatch, tmp_path / "cache2")
    with Saves(stop_after=1) as saves:
        code, out, err = build(capsys, tiny_suite, tiny_backbone, root, "--precision", "bf16")
    assert code == 130 and [line for line in out.splitlines() if line.startswith("shard ")] == [expected]
    assert len(saves.saved) == 1


def test_export_import_and_status_from_another_shell(tmp_path, monkeypatch, capsys, cache, tiny_backbone, tiny_suite):
    root = tmp_path / "refs"
    with Saves(stop_after=9):
        assert build(capsys, tiny_suite, tiny_backbone, root, "--no-shards")[0] == 130  # a build that exports nothing
    folder = folder_of(root, tiny_backbone)
    assert not folder.exists()
    code, out, err = shard_command(capsys, "status", tiny_suite, tiny_backbone, root)
    assert code == 0 and f"9 of {ENTRIES} entries done" in out, err
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:6]] for line in out.splitlines()
            if line.count("│") == 6 and "artifact" not in line}
    assert rows == {"prompts": ["4", "4", "0", "4/4"], "probe": ["4", "4", "0", "4/4"],
                    "zero_shot": ["16", "1", "0", "1/16"], "init": ["16", "0", "0", "0/16"]}
    code, out, err = shard_command(capsys, "export", tiny_suite, tiny_backbone, root)
    (shard,) = shards.read_shards(folder)
    assert code == 0 and f"exported 9 finished entries to shard {shard.folder}" in out and shard.record["wall_seconds"] is None
    code, out, err = shard_command(capsys, "export", tiny_suite, tiny_backbone, root)
    assert code == 0 and "nothing to export" in out and len(shards.read_shards(folder)) == 1
    # the same entries pack to the same bytes: a shard is deterministic
    again = tmp_path / "again"
    shards.export_shard(_bench(tiny_suite, tiny_backbone), again, reference.protocol_artifacts())
    assert (shards.read_shards(again)[0].folder / shards.ARCHIVE).read_bytes() == (shard.folder / shards.ARCHIVE).read_bytes()
    fresh = use_cache(monkeypatch, tmp_path / "cache2")
    code, out, err = shard_command(capsys, "import", tiny_suite, tiny_backbone, root)
    assert code == 0 and "9 of its 9 entries are this build's; 9 imported" in out, err
    assert stored(fresh) == stored(cache)
    code, out, err = shard_command(capsys, "import", tiny_suite, tiny_backbone, root)
    assert "9 of its 9 entries are this build's; 0 imported, 9 already in the cache" in out
    assert json.loads((shard.folder / shards.MANIFEST).read_text())["entries"][0]["artifact"] == "prompts"


@pytest.mark.parametrize("args, message", [
    (["build", "export"], "did you mean `transferbench reference shards export`"),
    (["shards", "--no-shards"], "--no-shards is no option of `reference shards`; it goes with `reference build`"),
    (["verify", "--shards", "x"], "--shards is no option of `reference verify`"),
])
def test_a_shard_word_or_option_where_it_does_not_belong_is_one_line(capsys, tiny_backbone, tiny_suite, args, message):
    code = main(["reference", *args, "--suite", str(tiny_suite), "--backbone", str(tiny_backbone)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def _bench(suite, backbone):
    from transferbench.pipeline.executors import LocalExecutor
    from transferbench.pipeline.runner import Benchmark
    from transferbench.tasks import load_suite

    return Benchmark(load_suite(str(suite)), str(backbone), [0], executor=LocalExecutor(threads=1))


def test_a_shard_made_on_a_gpu_names_it_and_a_cpu_build_is_told_to_match_its_device(monkeypatch):
    """No GPU is needed: what a shard records of a CUDA device, and the line a CPU build prints for it."""
    from types import SimpleNamespace

    import torch

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 80GB HBM3")
    planner = SimpleNamespace(device=torch.device("cuda", 0), context=SimpleNamespace(threads=1),
                              precision=SimpleNamespace(record=lambda: {"precision": "bf16"}))
    assert shards.machine_record(planner)["device"] == "cuda:0 (NVIDIA H100 80GB HBM3)"
    gpu = {"suite": "s", "backbone": {"backbone": "b"}, "seeds": [0], "config": {"steps": 1, "bf16": True},
           "device": "cuda", "precision": "bf16", "train_attention": "sdpa", "eval_kernel": "autocast",
           "prompts_per_pass": 12}
    cpu = {**gpu, "device": "cpu", "train_attention": "eager", "prompts_per_pass": 1}
    assert shards.setting_difference(gpu, cpu) == (
        "device cuda and train_attention sdpa and prompts_per_pass 12 where this build has cpu and eager and 1 "
        "(give --device cuda --train-attention sdpa --prompts-per-pass 12)")
    assert shards.setting_difference({**gpu, "config": {"steps": 1, "bf16": False}}, gpu) == ""  # bf16: the precision's
    assert shards.setting_difference({**gpu, "seeds": [1]}, gpu) == "another seeds"
