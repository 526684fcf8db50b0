"""Adversarial tests of sealed scoring (issue 26): each attack is a plugin file that tries to read
the ground truth, write outside its scratch folder, forge its answers or outlive the time limit.
Each must end in one error line or find nothing, and leave the reference, the cache and the output
folders byte for byte as they were."""

from __future__ import annotations

import hashlib
import json
import importlib.util
import math
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from transferbench.scoring import sandbox
from transferbench.errors import TransferbenchError
from transferbench.scoring.indicator import Indicator, TaskView, make_indicator
from transferbench.scoring.sandbox import score_pairs

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(importlib.util.find_spec("transferbench.references").submodule_search_locations[0])
TRANSFER = REFERENCE / "default__minilm" / "transfer.json"
SECRET = "TRANSFER-SECRET-"  # a prefix; the test process holds a value starting with it


def _sealed() -> bool:
    """Whether this machine seals scoring (found by one scoring call)."""
    score_pairs(Constant(), [(TaskView("a", "f", 2, {}), TaskView("b", "f", 2, {}))], time_limit=60)
    return sandbox.sealing() is None


class Constant(Indicator):
    def score(self, source, target):
        return 0.5


needs_sealing = pytest.mark.skipif(not sys.platform.startswith("linux") or not _sealed(),
                                   reason="the operating system does not seal scoring here")


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A project folder (cwd) with submissions/ and leaderboard/, and a cache with one artifact."""
    root = tmp_path / "project"
    for folder, file in [("submissions", "official.json"), ("leaderboard", "leaderboard.json")]:
        (root / folder).mkdir(parents=True)
        (root / folder / file).write_text('{"rows": []}')
    cache = tmp_path / "cache"
    (cache / "text_embedding").mkdir(parents=True)
    (cache / "text_embedding" / "task.safetensors").write_bytes(b"embedding bytes")
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(cache))
    monkeypatch.chdir(root)
    return {"root": root, "cache": cache}


def _digest(*folders: Path) -> str:
    """One hash of every file's path and bytes under `folders`."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _score(tmp_path, body: str, time_limit: float = 60, imports: str = "") -> float:
    """Score one pair with the plugin whose `score` body is `body`, loaded as file.py:Class."""
    file = tmp_path / f"attack_{uuid.uuid4().hex[:8]}.py"
    file.write_text(textwrap.dedent(f"""
        import ctypes, gc, json, os, subprocess, sys
        {imports}
        from transferbench.scoring.indicator import Indicator

        class Attack(Indicator):
            def score(self, source, target):
        """) + textwrap.indent(textwrap.dedent(body), " " * 8))
    views = (TaskView("a", "f", 2, {}), TaskView("b", "f", 2, {}))
    secret_transfer = SECRET + uuid.uuid4().hex  # noqa: F841 -- what a frame walk would look for
    return score_pairs(make_indicator(f"{file}:Attack"), [views], time_limit=time_limit)[0]


def _unchanged(project, run):
    before = _digest(project["root"], project["cache"], REFERENCE, REPO / "submissions", REPO / "leaderboard")
    try:
        return run()
    finally:
        after = _digest(project["root"], project["cache"], REFERENCE, REPO / "submissions", REPO / "leaderboard")
        assert after == before, "the plugin changed files outside its scratch folder"


# ---- the ground truth: the four escapes of issue 26 ---------------------------------------------

@needs_sealing
def test_the_shipped_reference_file_cannot_be_read(tmp_path, project):
    assert TRANSFER.is_file()  # the test process reads it
    with pytest.raises(TransferbenchError) as info:
        _unchanged(project, lambda: _score(tmp_path, f"return float(len(open({str(TRANSFER)!r}).read()))"))
    assert "raised FileNotFoundError" in str(info.value) and "\n" not in str(info.value)


@needs_sealing
def test_the_reference_package_data_is_empty_and_the_checkout_shows_code_only(tmp_path, project):
    body = f"""
        from importlib import resources
        try:
            listed = [p.name for p in resources.files("transferbench.references").iterdir()]
        except ModuleNotFoundError:  # its folder is hidden, so the package is not found
            listed = []
        checkout = sorted(os.listdir({str(REPO)!r}))
        if listed or any(name in checkout for name in ("reference", "submissions", "leaderboard", ".git")):
            return 1.0
        return 0.0
    """
    assert _unchanged(project, lambda: _score(tmp_path, body)) == 0.0


@needs_sealing
def test_load_shipped_finds_no_reference(tmp_path, project):
    body = """
        from transferbench.reference.bundle import load_shipped
        try:
            return 1.0 if load_shipped("default", "minilm") is not None else 0.0
        except Exception:
            return 0.0
    """
    assert _unchanged(project, lambda: _score(tmp_path, body)) == 0.0


def test_a_gc_walk_finds_nothing_of_the_benchmark_process(tmp_path, project):
    """A fresh interpreter: nothing the caller holds is among the plugin's objects (any platform)."""
    held = SECRET + uuid.uuid4().hex  # noqa: F841 -- held by this process while the plugin scores
    body = f"""
        found = [o for o in gc.get_objects() if isinstance(o, dict)
                 for v in list(o.values()) if isinstance(v, str) and v.startswith({SECRET!r}) and v != {SECRET!r}]
        found += [o for o in gc.get_objects() if type(o).__name__ in ("Reference", "ArtifactStore", "Runner")]
        return float(len(found))
    """
    assert _unchanged(project, lambda: _score(tmp_path, body)) == 0.0


def test_a_frame_walk_finds_no_caller_of_score_pairs(tmp_path, project):
    body = f"""
        frame, found = sys._getframe(), 0
        while frame is not None:
            found += sum(isinstance(v, str) and v.startswith({SECRET!r}) and v != {SECRET!r}
                         for v in frame.f_locals.values())
            frame = frame.f_back
        return float(found)
    """
    assert _unchanged(project, lambda: _score(tmp_path, body)) == 0.0


@needs_sealing
def test_the_benchmark_process_is_not_visible_in_proc(tmp_path, project):
    """A PID namespace with its own /proc: the parent's memory (/proc/PID/mem) is out of reach."""
    body = """
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        return float(len(pids) > 2 or os.getppid() != 0)
    """
    assert _unchanged(project, lambda: _score(tmp_path, body)) == 0.0


# ---- writes: the three escapes of issue 26 -----------------------------------------------------

@needs_sealing
@pytest.mark.parametrize("target", ["submissions/forged.json", "leaderboard/leaderboard.json",
                                    "CACHE/text_embedding/task.safetensors", "REPO/submissions/forged.json",
                                    "REPO/reference/default__minilm/transfer.json", "HOME/.bashrc_forged"])
def test_a_plugin_writes_nothing_outside_its_scratch_folder(tmp_path, project, target):
    path = (target.replace("CACHE", str(project["cache"])).replace("REPO", str(REPO))
            .replace("HOME", str(Path.home())))
    path = str(project["root"] / path) if not path.startswith("/") else path
    body = f"""
        with open({path!r}, "w") as file:
            file.write('{{"indicator": "forged", "scores": 1.0}}')
        return 1.0
    """
    with pytest.raises(TransferbenchError) as info:
        _unchanged(project, lambda: _score(tmp_path, body))
    assert "raised" in str(info.value) and "\n" not in str(info.value)
    assert not Path(path).exists() or "forged" not in Path(path).read_text(errors="replace")


def test_the_scratch_folder_is_writable_and_removed(tmp_path, project):
    body = """
        with open("notes.txt", "w") as file:
            file.write("scratch")
        import tempfile
        tempfile.mkstemp()
        return 2.0 if os.getcwd() == os.environ["TMPDIR"] else 0.0
    """
    before = set(Path("/tmp").glob("transferbench-score-*"))
    assert _unchanged(project, lambda: _score(tmp_path, body)) == 2.0
    assert set(Path("/tmp").glob("transferbench-score-*")) <= before


@needs_sealing
@pytest.mark.parametrize("how", ["umount", "remount_rw", "nested_namespace_umount"])
def test_the_hiding_cannot_be_undone(tmp_path, project, how):
    """Mounts made before the plugin runs are locked: unmounting or remounting them fails, even
    from a further user namespace where the plugin has capabilities again."""
    body = f"""
        libc = ctypes.CDLL(None, use_errno=True)
        if {how!r} == "nested_namespace_umount":
            uid = os.getuid()
            if libc.unshare(0x10000000 | 0x00020000) == 0:
                open("/proc/self/setgroups", "w").write("deny")
                open("/proc/self/uid_map", "w").write(f"0 {{uid}} 1")
        target = {str(REFERENCE).encode()!r}
        if {how!r} == "remount_rw":
            libc.mount(None, b"/", None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND, without MS_RDONLY
            libc.mount(None, target, None, 32 | 4096, None)
        else:
            libc.umount2(target, 2)  # MNT_DETACH
            libc.umount2({str(REPO).encode()!r}, 2)
        try:
            open({str(TRANSFER)!r}).read()
            return 1.0
        except OSError:
            pass
        try:
            open({str(project['root'] / 'submissions' / 'x.json')!r}, "w").write("forged")
            return 2.0
        except OSError:
            return 0.0
    """
    assert _unchanged(project, lambda: _score(tmp_path, body)) == 0.0


# ---- the channel: answers are one finite float per pair ------------------------------------------

@pytest.mark.parametrize("forged", ['{"pair": 0, "value": NaN}', '{"pair": 0, "value": 0.99}',
                                    '{"pair": 0, "value": "1.0"}', '{"ready": "sealed"}', 'garbage'])
def test_a_plugin_writing_to_the_channel_gets_one_error_line(tmp_path, project, forged):
    line = forged.encode() + b"\n"
    body = f"""
        for fd in range(3, 64):
            try:
                os.write(fd, {line!r})
            except OSError:
                pass
        return 0.5
    """
    with pytest.raises(TransferbenchError) as info:
        _unchanged(project, lambda: _score(tmp_path, body))
    assert "sent a malformed answer" in str(info.value) and "\n" not in str(info.value)
    assert "'Attack'" in str(info.value)


@pytest.mark.parametrize("value", ["float('nan')", "float('inf')", "'0.5'", "[0.5]", "True"])
def test_a_score_that_is_not_one_finite_float_is_one_error_line(tmp_path, project, value):
    with pytest.raises(TransferbenchError) as info:
        _score(tmp_path, f"return {value}")
    assert "on pair a -> b returned" in str(info.value) and "\n" not in str(info.value)


# ---- the time limit: every process the plugin started ends with it ----------------------------

@pytest.mark.parametrize("then", ["hang", "return"])
def test_a_setsid_grandchild_neither_outlives_the_limit_nor_holds_stdout(tmp_path, project, then):
    hang = "import time; time.sleep(60)" if then == "hang" else "pass"
    marker = f"{90 + uuid.uuid4().int % 1000 / 1000:.3f}"  # a sleep length no other process uses
    body = f"""
        subprocess.Popen(["setsid", "sleep", "{marker}"])
        if os.fork() == 0:
            os.setsid()
            os.execvp("sleep", ["sleep", "{marker}"])
        {hang}
        return 0.5
    """
    started = time.monotonic()
    if then == "hang":
        with pytest.raises(TransferbenchError, match="exceeded the time limit of 2 s"):
            _score(tmp_path, body, time_limit=2)
    else:
        assert _score(tmp_path, body, time_limit=2) == 0.5
    assert time.monotonic() - started < 2 + 10
    time.sleep(0.3)
    survivors = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _runs(p, marker)]
    if sandbox.sealing() is None:
        assert not survivors, "a grandchild outlived the scoring process"


def _runs(proc: Path, marker: str) -> bool:
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        return marker in (proc / "cmdline").read_text() and state != "Z"
    except OSError:
        return False


# ---- in-memory classes, the fallback ----------------------------------------------------------

def test_a_class_defined_in_a_test_travels_by_value_and_scores_sealed():
    class Local(Indicator):
        def __init__(self, weight: float = 2.0):
            self.weight = weight

        def score(self, source, target):
            return self.weight * (source.train_size - target.train_size)

    views = (TaskView("a", "f", 2, {"train_size": 5}), TaskView("b", "f", 2, {"train_size": 3}))
    assert score_pairs(Local(), [views]) == [4.0]


def test_an_indicator_that_cannot_be_pickled_is_one_error_line():
    import threading

    class Holder(Indicator):
        def __init__(self, lock=None):
            self.lock = lock

        def score(self, source, target):
            return 0.0

    with pytest.raises(TransferbenchError, match="cannot be sent to its scoring process"):
        score_pairs(Holder(threading.Lock()), [(TaskView("a", "f", 2, {}), TaskView("b", "f", 2, {}))])


def test_without_operating_system_sealing_it_says_so_in_one_line_and_still_scores(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "_unsealable", "test: no namespaces")
    monkeypatch.setattr(sandbox, "_told", False)
    views = (TaskView("a", "f", 2, {}), TaskView("b", "f", 2, {}))
    assert score_pairs(Constant(), [views]) == [0.5]
    assert score_pairs(Constant(), [views]) == [0.5]
    err = capsys.readouterr().err
    assert err.count("not sealed by the operating system here (test: no namespaces)") == 1


@needs_sealing
def test_a_plugin_file_inside_a_hidden_folder_is_still_imported(project):
    """A file in the run's output folder (hidden) is re-exposed alone: its neighbours stay hidden."""
    file = project["root"] / "submissions" / "inside.py"
    file.write_text(textwrap.dedent("""
        import os
        from transferbench.scoring.indicator import Indicator

        class Inside(Indicator):
            def score(self, source, target):
                return float(len(os.listdir(os.path.dirname(__file__))))
        """))
    views = (TaskView("a", "f", 2, {}), TaskView("b", "f", 2, {}))
    assert score_pairs(make_indicator(f"{file}:Inside"), [views]) == [1.0]


def test_the_checkout_a_run_happens_in_is_hidden_though_the_code_is_installed_elsewhere(tmp_path, monkeypatch):
    """A non-editable install (tox's) runs beside its checkout: that checkout is hidden too."""
    checkout = tmp_path / "clone"
    (checkout / "reference").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "transferbench"\n')
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    monkeypatch.chdir(checkout / "reference")
    assert checkout.resolve() in sandbox._checkouts()
    monkeypatch.chdir(tmp_path / "other")
    assert not any(folder.is_relative_to(tmp_path.resolve()) for folder in sandbox._checkouts())


def test_an_install_without_direct_url_names_no_extra_checkout(monkeypatch, tmp_path):
    """A source tree on sys.path or a legacy egg-info has no `direct_url.json`: no error."""
    class NoDirectUrl:
        def read_text(self, name):
            return None

    monkeypatch.setattr(sandbox.importlib.metadata, "distribution", lambda name: NoDirectUrl())
    monkeypatch.chdir(tmp_path)
    assert isinstance(sandbox._checkouts(), set)


# ---- a run's output folders, wherever they are ----------------------------------------------------

@needs_sealing
def test_hidden_folders_may_hold_the_scratch_folder(tmp_path, project):
    """`hidden` may name a folder that holds the scratch folder (a results folder in /tmp): the
    scratch folder and the plugin's file stay reachable, the rest of that folder does not."""
    import tempfile

    secret = tmp_path / "results" / "secret.json"
    secret.parent.mkdir()
    secret.write_text("{}")
    file = tmp_path / "probe.py"
    file.write_text(textwrap.dedent(f"""
        import os
        from transferbench.scoring.indicator import Indicator

        class Probe(Indicator):
            def score(self, source, target):
                with open("notes.txt", "w") as notes:
                    notes.write("scratch")
                return float(os.path.exists({str(secret)!r})) + 2.0 * float(os.path.exists(__file__))
        """))
    views = (TaskView("a", "f", 2, {}), TaskView("b", "f", 2, {}))
    hidden = [tempfile.gettempdir()]
    assert _unchanged(project, lambda: score_pairs(make_indicator(f"{file}:Probe"), [views], hidden=hidden)) == [2.0]


@needs_sealing
def test_a_runs_output_folders_outside_the_working_directory_are_hidden(tmp_path, monkeypatch, tiny_backbone,
                                                                        tiny_suite, cache):
    """`transferbench run --results-dir` (and --submissions-dir) anywhere, not only under the
    folder the run starts in: the plugin finds neither the user's earlier results nor the
    project's, while it reads other files."""
    import transferbench
    from transferbench.run_config import RunConfig

    results_dir, project = tmp_path / "elsewhere" / "mine", tmp_path / "elsewhere" / "project"
    earlier, official = results_dir / "submissions" / "earlier.json", project / "submissions" / "official.json"
    visible = tmp_path / "visible.txt"
    for path in (earlier, official, visible):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    file = tmp_path / "plugins" / "probe.py"
    file.parent.mkdir()
    file.write_text(textwrap.dedent(f"""
        import os
        from transferbench.scoring.indicator import Indicator

        class Probe(Indicator):
            def score(self, source, target):
                found = [os.path.exists(path) for path in ({str(earlier)!r}, {str(official)!r}, {str(visible)!r})]
                return float(found[0] + 2 * found[1] + 4 * found[2])
        """))
    (tmp_path / "run_here").mkdir()
    monkeypatch.chdir(tmp_path / "run_here")
    settings = {"suite": str(tiny_suite), "backbone": str(tiny_backbone), "results_dir": results_dir,
                "submissions_dir": project / "submissions", "leaderboard_dir": project / "leaderboard"}
    assert {results_dir.absolute(), (project / "submissions").absolute(), project.absolute() / "verification"} <= set(
        RunConfig(indicators=["random"], **settings).output_folders())
    done = transferbench.run(indicators=[f"{file}:Probe"], kinds=["zero_shot"], write=False, **settings)
    scores = done.results[0].scores
    assert {value for row in scores.values() for value in row.values() if not math.isnan(value)} == {4.0}


# ---- loading: a file plugin's top level, constructor and contract check run sealed -------------

LOADED = '''
import json, os
{top}
from transferbench.scoring.indicator import Indicator

class Loaded(Indicator):
    requires = ("train_size",)
    description = "loaded sealed"

    def __init__(self, weight: float = 1.0):
        {init}
        self.weight = weight

    def score(self, source, target):
        return self.weight * source.train_size
'''


@needs_sealing
def test_a_file_plugin_is_loaded_in_the_sealed_process_never_here(tmp_path, project):
    """The module's top level and the constructor try to write an official result and read the
    reference: neither runs in this process, and in the sealed one both fail quietly."""
    forged = project["root"] / "submissions" / "forged.json"
    attempt = (f"try:\n    open({str(forged)!r}, 'w').write('forged')\nexcept OSError:\n    pass\n"
               f"try:\n    SEEN = len(open({str(TRANSFER)!r}).read())\nexcept OSError:\n    SEEN = 0\n")
    file = tmp_path / "loaded_plugin.py"
    file.write_text(LOADED.format(top=attempt, init="self.seen = SEEN"))
    from transferbench.scoring.sandbox import LoadedIndicator, code_of, load_sealed
    from transferbench.scoring.indicator import indicator_code, load_file_class

    indicator = _unchanged(project, lambda: load_sealed(f"{file}:Loaded:weight=2"))
    assert isinstance(indicator, LoadedIndicator) and "transferbench_user_loaded_plugin" not in sys.modules
    assert (indicator.name, indicator.requires, indicator.get_params(), indicator.defaults()) == (
        "Loaded", ("train_size",), {"weight": 2}, {"weight": 1.0})
    assert not forged.exists()
    views = (TaskView("a", "f", 2, {"train_size": 3}), TaskView("b", "f", 2, {"train_size": 5}))
    assert _unchanged(project, lambda: score_pairs(indicator, [views])) == [6.0]
    assert code_of(indicator) == indicator_code(load_file_class(str(file), "Loaded"))  # the same identity as loaded here


@pytest.mark.parametrize("case", ["import_exit", "constructor", "unknown_parameter", "no_class"])
def test_loading_failures_in_the_sealed_process_are_the_same_one_line(tmp_path, case):
    from transferbench.scoring.sandbox import load_sealed

    file = tmp_path / "failing_plugin.py"
    file.write_text(LOADED.format(top="import sys; sys.exit(3)" if case == "import_exit" else "",
                                  init="raise RuntimeError('constructor exploded')" if case == "constructor" else "pass"))
    spec = {"unknown_parameter": f"{file}:Loaded:wieght=2", "no_class": f"{file}:Lodead"}.get(case, f"{file}:Loaded")
    expected = {"import_exit": f"indicator file {str(file)!r} failed to import: SystemExit: 3",
                "constructor": "indicator 'Loaded': its constructor raised RuntimeError: constructor exploded",
                "unknown_parameter": "indicator 'Loaded' has no parameter 'wieght' (did you mean 'weight'?)",
                "no_class": f"{str(file)!r} has no class 'Lodead'"}[case]
    with pytest.raises(TransferbenchError) as info:
        load_sealed(spec)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value), info.value


@pytest.mark.parametrize("forgery", ["builtin_name", "unknown_artifact", "two_reports"])
def test_a_forged_load_report_claims_nothing(tmp_path, forgery):
    """The plugin's top level writes its own report on the channel: a malformed one, or one
    followed by the real one, is one line; a well-formed one naming itself `random` still carries
    this file's code, computed here, and a run refuses it."""
    import transferbench
    from transferbench.scoring.sandbox import code_of, load_sealed

    report = {"class": "Loaded", "name": "random", "requires": ["train_size"], "description": "", "baseline": True,
              "kind": None, "params": {"weight": 1.0}, "defaults": {"weight": 1.0}}
    if forgery == "unknown_artifact":
        report["requires"] = ["transfer_matrix"]
    line = json.dumps({"loaded": report})
    then = "os._exit(0)" if forgery != "two_reports" else "pass"
    top = (f"for fd in range(3, 64):\n    try:\n        os.write(fd, {line!r}.encode() + b'\\n')\n"
           f"    except OSError:\n        pass\n{then}\n")
    file = tmp_path / "forging_plugin.py"
    file.write_text(LOADED.format(top=top, init="pass"))
    if forgery != "builtin_name":
        with pytest.raises(TransferbenchError, match="sent a malformed answer"):
            load_sealed(f"{file}:Loaded")
        return
    indicator = load_sealed(f"{file}:Loaded")
    assert indicator.name == "random" and code_of(indicator)["module"] == "forging_plugin.py"
    with pytest.raises(TransferbenchError, match="indicator 'random' is the name of a built-in indicator, but Loaded "
                                                 r"\(forging_plugin.py\) is other code"):
        transferbench.run(indicators=[f"{file}:Loaded"], write=False)
