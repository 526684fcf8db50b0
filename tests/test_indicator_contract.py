"""The indicator contract is checked when an indicator is registered or loaded, before any compute
(scikit-learn's `check_estimator` idea): each breach is one error line naming the indicator and
what to do, whichever way the indicator comes in (decorator, entry point, `file.py:Class`, a class
or an instance given to `transferbench.run`)."""

from __future__ import annotations

import sys
import textwrap

import pytest

from transferbench.errors import TransferbenchError
from transferbench.scoring.indicator import (
    INDICATORS, Indicator, as_indicator, check_indicator, check_indicator_class, known_artifacts, make_indicator,
)
from transferbench.registry import isolated

# Each broken class (as source code, so it can also be a plugin file or module), and the message.
PREAMBLE = "from transferbench.scoring.indicator import Indicator\n\n\nclass Broken(Indicator):\n"
CLASS_BREACHES = {
    "requires_unknown_artifact": ("    requires = ('prompt',)\n\n    def score(self, source, target):\n        return 0.0\n",
                                  "indicator 'Broken' requires unknown artifact 'prompt' (did you mean 'prompts'"),
    "requires_a_string": ("    requires = 'prompts'\n\n    def score(self, source, target):\n        return 0.0\n",
                          "indicator 'Broken': `requires` must be a tuple of artifact names"),
    "no_score": ("    description = 'nothing'\n",
                 "indicator 'Broken' does not implement score(self, source, target)"),
    "score_signature": ("    def score(self, source):\n        return 0.0\n",
                        "indicator 'Broken': score(self, source) must be a method score(self, source, target)"),
    "score_not_a_method": ("    score = 1.0\n", "indicator 'Broken': score = 1.0 must be a method score(self, source, target)"),
    "description_not_text": ("    description = ['a', 'list']\n\n    def score(self, source, target):\n        return 0.0\n",
                             "indicator 'Broken': `description` must be a string (one line on what it measures), got list"),
    "name_not_text": ("    name = 3\n\n    def score(self, source, target):\n        return 0.0\n",
                      "indicator 'Broken': `name` must be a string, got int; or leave it out"),
    "kind_unknown": ("    kind = 'neurons'\n\n    def score(self, source, target):\n        return 0.0\n",
                     "indicator 'Broken': `kind` must be one of neuron, prompt, estimator, baseline or None, got 'neurons'"),
    "baseline_not_bool": ("    baseline = 'yes'\n\n    def score(self, source, target):\n        return 0.0\n",
                          "indicator 'Broken': `baseline` must be True or False, got 'yes'"),
    "init_varargs": ("    def __init__(self, *weights):\n        self.weights = weights\n\n"
                     "    def score(self, source, target):\n        return 0.0\n",
                     "indicator 'Broken': __init__ takes *weights; take each parameter by name (name=default)"),
    "init_kwargs": ("    def __init__(self, **options):\n        self.options = options\n\n"
                    "    def score(self, source, target):\n        return 0.0\n",
                    "indicator 'Broken': __init__ takes **options; take each parameter by name"),
}
# Breaches only an instance shows (its constructor ran).
INSTANCE_BREACHES = {
    "parameter_stored_elsewhere": ("    def __init__(self, weight=1.0):\n        self.w = weight\n\n"
                                   "    def score(self, source, target):\n        return 0.0\n",
                                   "indicator 'Broken': parameter 'weight' of __init__ is not stored under its own "
                                   "name; set self.weight = weight in __init__ (parameters are read back by name)"),
    "parameter_changed": ("    def __init__(self, weight=1.0):\n        self.weight = weight * 2\n\n"
                          "    def score(self, source, target):\n        return 0.0\n",
                          "indicator 'Broken': parameter 'weight' does not round-trip: Broken(weight=2.0) stores 4.0; "
                          "store each parameter unchanged in __init__"),
    "repr_raises": ("    def __repr__(self):\n        raise RuntimeError('no repr')\n\n"
                    "    def score(self, source, target):\n        return 0.0\n",
                    "indicator 'Broken': repr() raised RuntimeError: no repr"),
}
ALL_BREACHES = {**CLASS_BREACHES, **INSTANCE_BREACHES}


def broken_class(case: str, module_name: str = "broken_module") -> type[Indicator]:
    namespace = {"__name__": module_name}
    exec(PREAMBLE + ALL_BREACHES[case][0], namespace)  # noqa: S102 -- test fixtures of our own
    return namespace["Broken"]


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("case", sorted(CLASS_BREACHES))
def test_registering_a_broken_class_is_one_line(isolated_registries, case):
    """`@register_indicator` (`INDICATORS.add`) checks the class when it is registered: the plugin
    module fails on import, not after a run computed its artifacts."""
    cls = broken_class(case)
    with pytest.raises(TransferbenchError) as info:
        INDICATORS.add("Broken", cls)
    assert CLASS_BREACHES[case][1] in one_line(info)
    assert "Broken" not in INDICATORS


@pytest.mark.parametrize("case", sorted(CLASS_BREACHES))
def test_an_installed_plugin_is_checked_when_loaded(isolated_registries, tmp_path, monkeypatch, case):
    """An entry point (a lazy "module:Class" target) is checked when first looked up."""
    module = f"contract_plugin_{case}"
    (tmp_path / f"{module}.py").write_text(PREAMBLE + CLASS_BREACHES[case][0])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delitem(sys.modules, module, raising=False)
    INDICATORS.add("Broken", f"{module}:Broken")
    with pytest.raises(TransferbenchError) as info:
        make_indicator("Broken")
    assert CLASS_BREACHES[case][1] in one_line(info)


@pytest.mark.parametrize("case", sorted(ALL_BREACHES))
def test_a_broken_indicator_file_is_one_line_when_loaded(tmp_path, case):
    file = tmp_path / "broken.py"
    file.write_text(PREAMBLE + ALL_BREACHES[case][0])
    for spec in (f"{file}:Broken", str(file)):
        with pytest.raises(TransferbenchError) as info:
            make_indicator(spec)
        assert ALL_BREACHES[case][1] in one_line(info), spec


@pytest.mark.parametrize("case", sorted(ALL_BREACHES))
def test_a_broken_class_or_instance_given_to_the_library_is_one_line(case):
    cls = broken_class(case)
    with pytest.raises(TransferbenchError) as info:
        as_indicator(cls)
    assert ALL_BREACHES[case][1] in one_line(info)
    if case in CLASS_BREACHES and case.startswith("init_"):
        return  # no instance to build by name
    instance = object.__new__(cls)  # as built elsewhere: the contract is checked on the instance as given
    instance.__dict__.update({"w": 1.0} if case == "parameter_stored_elsewhere" else
                             {"weight": 2.0} if case == "parameter_changed" else {})
    with pytest.raises(TransferbenchError) as info:
        as_indicator(instance)
    assert ALL_BREACHES[case][1] in one_line(info)


@pytest.mark.parametrize("case", sorted(ALL_BREACHES))
def test_a_broken_indicator_stops_a_run_before_any_compute(monkeypatch, tmp_path, case):
    """Through `transferbench.run`: the error comes before a benchmark is even built (nothing is
    trained, loaded or cached)."""
    import transferbench
    from transferbench import api

    def no_benchmark(*args, **kwargs):
        raise AssertionError("a benchmark was built before the indicators were checked")

    monkeypatch.setattr(api, "benchmark_for", no_benchmark)
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(TransferbenchError) as info:
        transferbench.run(indicators=[broken_class(case)], suite="smoke")
    assert ALL_BREACHES[case][1] in one_line(info)
    assert not (tmp_path / "cache").exists()


def test_every_builtin_indicator_keeps_the_contract():
    for name in INDICATORS.names():
        cls = INDICATORS.get(name)
        assert check_indicator_class(cls) is cls
        indicator = make_indicator(name)
        assert check_indicator(indicator) is indicator
        assert type(indicator)(**indicator.get_params()).get_params() == indicator.get_params()
        assert repr(indicator).startswith(type(indicator).__name__ + "(")


def test_a_sound_plugin_passes_every_way_in(isolated_registries, tmp_path):
    source = PREAMBLE.replace("Broken", "Sound") + textwrap.indent(textwrap.dedent('''
        requires = ("prompts",)
        description = "fine"
        kind = "prompt"

        def __init__(self, weight=1.0, measure="cosine"):
            if measure not in ("cosine", "dot"):
                raise ValueError(f"measure must be cosine or dot, got {measure!r}")
            self.weight = weight
            self.measure = measure

        def score(self, source, target):
            return self.weight
    '''), "    ")
    namespace = {"__name__": "sound_module"}
    exec(source, namespace)  # noqa: S102
    cls = namespace["Sound"]
    INDICATORS.add("sound", cls)
    assert make_indicator("sound:weight=2").get_params() == {"weight": 2, "measure": "cosine"}
    assert as_indicator(cls(weight=3.0)).weight == 3.0
    file = tmp_path / "sound.py"
    file.write_text(source)
    assert repr(make_indicator(f"{file}:Sound:measure=dot")) == "Sound(weight=1.0, measure='dot')"


def test_known_artifacts_are_what_a_task_view_serves():
    from transferbench.scoring.indicator import ARTIFACTS, TaskView

    assert set(known_artifacts()) == set(ARTIFACTS)
    view = TaskView("a", "f", 2, {"prompts": [1]})
    assert view.prompts == [1]
    with pytest.raises(AttributeError):
        view.not_an_artifact  # noqa: B018
