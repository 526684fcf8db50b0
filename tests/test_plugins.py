"""Third-party indicators: installed packages (entry points), the per-pair time limit, and the
example in docs/indicators.md, which runs here exactly as printed so the page cannot rot."""

from __future__ import annotations

import re
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from transferbench.cli import main
from transferbench.errors import TransferbenchError
from transferbench.registry import rescanned
from transferbench.scoring import indicator as indicator_module
from transferbench.scoring.indicator import (
    ARTIFACTS, INDICATORS, Indicator, PairOutputs, TaskView, checked_score, make_indicator,
)
from transferbench.scoring.sandbox import DEFAULT_TIME_LIMIT, score_pairs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "indicators.md"
EXAMPLE_HEADING = "## A complete example"


def view(name, artifacts, family="fam"):
    return TaskView(name, family, 2, artifacts)


@pytest.fixture()
def fresh_registry():
    """Let a test register indicators and rescan entry points; everything is restored afterwards."""
    with rescanned(INDICATORS):
        yield


# ---- entry points ---------------------------------------------------------------------------------

@pytest.fixture()
def installed_plugin(tmp_path, monkeypatch, fresh_registry):
    """A real, minimal installed distribution `my_plugin` declaring one indicator entry point."""
    package = tmp_path / "my_plugin"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent('''
        from transferbench.scoring.indicator import Indicator

        class MyMetric(Indicator):
            """1 for tasks of the same family, else 0, times `weight`."""
            requires = ("train_size",)
            description = "same-family indicator from an installed plugin"

            def __init__(self, weight: float = 1.0):
                self.weight = weight

            def score(self, source, target):
                return self.weight * float(source.family == target.family)
    '''))
    info = tmp_path / "my_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[transferbench.indicators]\nmy_metric = my_plugin:MyMetric\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_plugin", None)


def test_installed_package_entry_point_is_discovered_and_runs(installed_plugin):
    metric = make_indicator("my_metric:weight=2.5")
    assert type(metric).__name__ == "MyMetric" and metric.name == "my_metric"
    assert metric.get_params() == {"weight": 2.5}
    a, b, c = (view(n, {"train_size": 10}, family=f) for n, f in [("a", "x"), ("b", "x"), ("c", "y")])
    assert checked_score(metric, a, b) == 2.5
    assert checked_score(metric, a, c) == 0.0
    assert "my_metric" in indicator_module.all_indicator_names()


def test_installed_plugin_is_listed_by_the_cli(installed_plugin, capsys):
    assert main(["indicators"]) == 0
    out = capsys.readouterr().out
    assert "my_metric" in out and "same-family indicator from an installed plugin" in out
    assert "skill_overlap" in out  # built-ins are still there


def test_registry_is_restored_after_plugin_tests():
    # Runs after the two tests above (file order): their registrations must not leak.
    assert "my_metric" not in INDICATORS


# ---- time limit -----------------------------------------------------------------------------------

class Sleepy(Indicator):
    def __init__(self, seconds: float = 2.0):
        self.seconds = seconds

    def score(self, source, target):
        time.sleep(self.seconds)
        return 1.0


class Swallower(Indicator):
    """Tries to hide the interruption with a broad `except Exception`."""

    def score(self, source, target):
        try:
            time.sleep(2.0)
        except Exception:
            return 0.0
        return 1.0


class BaseSwallower(Indicator):
    """Catches BaseException in a loop: no exception raised into it could ever stop it."""

    def score(self, source, target):
        while True:
            try:
                time.sleep(0.05)
            except BaseException:
                pass


def test_default_time_limit_is_a_minute():
    assert DEFAULT_TIME_LIMIT == 60.0


@pytest.mark.parametrize("slow", [Sleepy(60.0), Swallower(), BaseSwallower()])
def test_slow_plugin_exceeds_time_limit_with_one_line(slow):
    handler_before = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    with pytest.raises(TransferbenchError) as info:
        score_pairs(slow, [(view("src", {}), view("tgt", {}))], time_limit=0.2)[0]
    assert time.monotonic() - started < 10  # loose: a busy machine forks slowly; the sleeper sleeps 60 s
    name = type(slow).__name__
    assert str(info.value) == f"indicator {name!r} on pair src -> tgt exceeded the time limit of 0.2 s"
    assert signal.getsignal(signal.SIGALRM) is handler_before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_fast_plugin_passes_within_time_limit():
    assert score_pairs(Sleepy(0.01), [(view("a", {}), view("b", {}))], time_limit=5.0)[0] == 1.0
    assert score_pairs(Sleepy(0.01), [(view("a", {}), view("b", {}))], time_limit=None)[0] == 1.0
    time.sleep(0.6)  # no alarm left behind to go off later
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_time_limit_leaves_the_callers_alarm_and_ctrl_c_handler_alone():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        score_pairs(Sleepy(0.01), [(view("a", {}), view("b", {}))], time_limit=3.0)[0]
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 4.0 < remaining <= 5.0 and not fired
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_limit_holds_outside_the_main_thread_too():
    """The limit is a child process killed at the deadline, not a signal: any thread gets it."""
    errors = []

    def score_in_thread():
        try:
            score_pairs(Sleepy(60.0), [(view("a", {}), view("b", {}))], time_limit=0.2)[0]
        except TransferbenchError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=score_in_thread)
    started = time.monotonic()
    thread.start()
    thread.join()
    assert time.monotonic() - started < 10
    assert errors == ["indicator 'Sleepy' on pair a -> b exceeded the time limit of 0.2 s"]


# ---- docs/indicators.md ---------------------------------------------------------------------------

def docs_example() -> tuple[str, str]:
    """The first ```python block after the example heading, and the name of its Indicator class."""
    text = DOCS.read_text(encoding="utf-8")
    assert EXAMPLE_HEADING in text, f"{DOCS} lost its {EXAMPLE_HEADING!r} section"
    after = text.split(EXAMPLE_HEADING, 1)[1]
    code = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    class_name = re.search(r"^class (\w+)\(Indicator\):", code, re.M).group(1)
    return code, class_name


def test_docs_list_every_artifact():
    text = DOCS.read_text(encoding="utf-8")
    missing = [name for name in ARTIFACTS if f"`{name}`" not in text]
    assert not missing, f"docs/indicators.md does not describe artifact(s) {missing}"


def test_docs_example_scores_task_views(tmp_path, fresh_registry):
    code, class_name = docs_example()
    file = tmp_path / "docs_example.py"
    file.write_text(code)
    indicator = make_indicator(f"{file}:{class_name}")
    declared = set(indicator.requires)
    assert declared <= set(ARTIFACTS)

    rng = np.random.default_rng(0)
    fake = {  # one synthetic value of every artifact, shaped as ARTIFACTS describes
        "prompts": [rng.normal(size=(4, 8)) for _ in range(2)],
        "skill_scores": rng.uniform(0, 0.5, size=(3, 16)),
        "mask_activations": [rng.normal(size=(3, 16)) for _ in range(2)],
        "mask_activations_task": [rng.normal(size=(3, 16)) for _ in range(2)],
        "text_embedding": rng.normal(size=8),
        "samples": [("a fine film", None, "pos"), ("a dull film", None, "neg")],
        "train_size": 100,
        "source_corpus": "pypi:corpus==1.0/data.csv",
        "pair_outputs": {"src": [PairOutputs(rng.normal(size=(6, 8)), np.full((6, 2), 0.5), np.arange(6) % 2)],
                         "tgt": [PairOutputs(rng.normal(size=(6, 8)), np.full((6, 2), 0.5), np.arange(6) % 2)]},
        "probe_ranking": [rng.permutation(48).reshape(3, 16) for _ in range(2)],
        "skill_scores_readout": rng.uniform(0, 0.5, size=(3, 16)),
        "readout_activations": [rng.normal(size=(3, 16)) for _ in range(2)],
        "readout_activations_task": [rng.normal(size=(3, 16)) for _ in range(2)],
    }
    assert set(fake) == set(ARTIFACTS), "add a synthetic value for the new artifact"
    other = {k: (v if k in ("samples", "train_size", "source_corpus", "pair_outputs", "probe_ranking") else
                 [x + 0.1 for x in v] if isinstance(v, list) else v + 0.1) for k, v in fake.items()}
    source = TaskView("src", "sentiment", 2, {a: fake[a] for a in declared})
    target = TaskView("tgt", "sentiment", 2, {a: other[a] for a in declared})
    value = score_pairs(indicator, [(source, target)], time_limit=DEFAULT_TIME_LIMIT)[0]
    assert isinstance(value, float) and np.isfinite(value)
    # parameters given on the command line reach the instance under their own names
    params = indicator.get_params()
    if params:
        name, default = next(iter(params.items()))
        changed = default + 1 if isinstance(default, (int, float)) and not isinstance(default, bool) else default
        assert make_indicator(f"{file}:{class_name}:{name}={changed}").get_params()[name] == changed


def test_docs_example_runs_through_the_cli(tmp_path, monkeypatch, cache, tiny_backbone, tiny_suite, capsys,
                                           fresh_registry):
    code, class_name = docs_example()
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "docs_example.py"
    file.write_text(code)
    # zero-shot transfer only: the initialisation arm trains 2 prompts per pair and adds nothing here
    status = main(["run", "--submit", "-i", f"{file}:{class_name}", "--suite", str(tiny_suite),
                   "--backbone", str(tiny_backbone), "--transfer", "zero_shot"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert class_name in out
    assert list((tmp_path / "submissions").glob(f"*{class_name}*.json"))
