"""One registry for every plugin kind (entry points, lazy loading, isolation for tests), and the
`RunConfig` behind `transferbench run --config run.yaml` (flags override the file; one error line
naming the file and field, or the flag)."""

from __future__ import annotations

import re

import sys
import textwrap

import pytest

from transferbench import registry
from transferbench.cli import _apply_run_config, build_parser, main
from transferbench.errors import TransferbenchError, UnknownNameError
from transferbench.model.backbone import BACKBONES, PackagedBackbone
from transferbench.pipeline.executors import EXECUTORS, LocalExecutor, make_executor
from transferbench.reference.protocol import TRANSFER_KIND_HELP, TRANSFER_KINDS, TransferKind
from transferbench.registry import Registry, isolated, rescanned
from transferbench.run_config import RunConfig, build_run_config
from transferbench.scoring.indicator import INDICATORS
from transferbench.tasks.sources import SOURCES, LocalSource, source_type


# ---- the registries --------------------------------------------------------------------------------

def test_every_plugin_kind_has_one_registry_with_its_entry_point_group():
    groups = {kind: reg.group for kind, reg in registry.ALL.items()}
    assert groups["indicator"] == "transferbench.indicators"
    assert groups["backbone"] == "transferbench.backbones"
    assert groups["executor"] == "transferbench.executors"
    assert groups["transfer kind"] == "transferbench.transfer_kinds"
    assert groups["data source"] == "transferbench.sources"
    assert list(TRANSFER_KINDS) == ["zero_shot", "zero_shot_relative", "init_gain"]  # registration order
    assert EXECUTORS.names() == ["local", "ray"] and BACKBONES.names()[:2] == ["minilm", "mpnet-base"]
    assert SOURCES.names() == ["pypi", "local", "hub"] and source_type(LocalSource) == "local"
    assert EXECUTORS.get("local") is LocalExecutor and LocalExecutor.registered_name == "local"
    assert dict(TRANSFER_KIND_HELP)["init_gain"] == TRANSFER_KINDS.get("init_gain").description


def test_unknown_names_suggest_close_ones():
    with pytest.raises(UnknownNameError, match="unknown executor 'rayy' \\(did you mean 'ray'\\?\\)"):
        EXECUTORS.get("rayy")
    with pytest.raises(UnknownNameError, match="unknown backbone 'minlm'.*'minilm'"):
        BACKBONES.get("minlm")
    with pytest.raises(UnknownNameError, match="unknown transfer kind"):
        TRANSFER_KINDS.get("zero")


def test_lazy_targets_load_on_first_lookup_and_are_checked_against_the_base():
    widgets: Registry[Exception] = Registry("widget", Exception)
    widgets.add("decode", "json:JSONDecodeError")
    widgets.add("pi", "math:pi")
    assert widgets._entries["decode"] == "json:JSONDecodeError"  # nothing imported yet
    import json

    assert widgets.get("decode") is json.JSONDecodeError and json.JSONDecodeError.registered_name == "decode"
    with pytest.raises(UnknownNameError, match="'pi' points to 3.14.*not a Exception"):
        widgets.get("pi")
    with pytest.raises(ValueError, match="registered twice"):
        widgets.add("decode", KeyError)
    registry.ALL.pop("widget")


def test_isolated_undoes_registrations_in_every_registry():
    before = {kind: reg.names() for kind, reg in registry.ALL.items()}
    with isolated():
        EXECUTORS.add("inline", LocalExecutor)
        TRANSFER_KINDS.add("same", TransferKind("always 1", lambda arm, source: (1.0, 1.0)))
        assert "inline" in EXECUTORS and TRANSFER_KINDS.names()[-1] == "same"
    assert {kind: reg.names() for kind, reg in registry.ALL.items()} == before


def test_isolated_registries_fixture(isolated_registries):
    BACKBONES.add("fake", PackagedBackbone(wheels=(), model_dir="m", description="test"))
    assert "fake" in BACKBONES


def test_after_the_fixture_the_fake_backbone_is_gone():
    assert "fake" not in BACKBONES


@pytest.fixture()
def installed_executor(tmp_path, monkeypatch):
    """A real, minimal installed distribution declaring an executor and a transfer kind."""
    package = tmp_path / "tb_extra"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent('''
        from transferbench.pipeline.executors import LocalExecutor
        from transferbench.reference.protocol import TransferKind

        class Inline(LocalExecutor):
            @classmethod
            def from_options(cls, *, address, num_cpus, num_gpus_per_task, threads_per_unit):
                return cls(threads=threads_per_unit)

        def _gap(arm, source):
            (own, own_b), (cell, cell_b) = arm("own"), arm("zero_shot", source)
            return cell - own, cell_b - own_b

        GAP = TransferKind("m(s->t) - m(t->t)", _gap)
    '''))
    info = tmp_path / "tb_extra-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tb_extra\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[transferbench.executors]\ninline = tb_extra:Inline\n\n"
                                           "[transferbench.transfer_kinds]\ngap = tb_extra:GAP\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with rescanned(EXECUTORS, TRANSFER_KINDS):
        yield
    sys.modules.pop("tb_extra", None)


def test_installed_packages_add_executors_and_transfer_kinds(installed_executor):
    executor = make_executor("inline", threads_per_unit=2)
    assert type(executor).__name__ == "Inline" and executor.threads_per_unit == 2
    assert TRANSFER_KINDS.names() == ["zero_shot", "zero_shot_relative", "init_gain", "gap"]
    assert TRANSFER_KINDS.get("gap").description == "m(s->t) - m(t->t)"
    assert build_run_config({"executor": "inline"}).executor == "inline"


def test_indicator_registry_names_each_builtin_once_and_loads_it_lazily():
    assert {"random", "logme", "skill_on"} <= set(INDICATORS.names())
    cls = INDICATORS.get("skill_on")
    assert cls.registered_name == "skill_on" and INDICATORS.get("skill_overlap").registered_name == "skill_overlap"


# ---- RunConfig and --config ------------------------------------------------------------------------

def _args(argv):
    args = build_parser().parse_args(argv)
    _apply_run_config(args)
    return args


def test_config_file_values_are_used_and_flags_override_them(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("indicators: [random, data_size]\nsuite: smoke\nseeds: [0, 1]\ntransfer: init_gain\n"
                      "unit_threads: 1\n")
    args = _args(["run", "--config", str(config)])
    assert (args.indicator, args.suite, args.seeds, args.transfer, args.unit_threads) == (
        ["random", "data_size"], "smoke", [0, 1], "init_gain", 1)
    assert args.run_config.transfer_kinds() == ["init_gain"]
    args = _args(["run", "--config", str(config), "--seeds", "3", "-i", "nce", "--transfer", "all"])
    assert (args.indicator, args.seeds, args.suite) == (["nce"], [3], "smoke")
    assert args.run_config.transfer_kinds() == list(TRANSFER_KINDS)


def test_without_a_file_the_defaults_are_the_old_flag_defaults():
    args = _args(["run", "-i", "random"])
    assert (args.suite, args.backbone, args.seeds, args.transfer, args.device, args.executor) == (
        "default", "minilm", None, "all", "auto", "local")
    assert str(args.submissions_dir) == "submissions" and str(args.leaderboard_dir) == "leaderboard"
    args = _args(["reference", "show", "--suite", "smoke", "--unit-threads", "2"])  # the shared parent parser
    assert (args.suite, args.unit_threads, args.executor) == ("smoke", 2, "local")


@pytest.mark.parametrize("text, message", [
    ("indicators: [random]\nsuit: smoke\n", "run.yaml: field 'suit': unknown field (did you mean 'suite'"),
    ("indicators: [random]\nseeds: [0, 0]\n", "run.yaml: field 'seeds': lists a seed twice"),
    ("indicators: [random]\nsuite: smok\n", "run.yaml: field 'suite': 'smok' does not load: unknown suite 'smok'"),
    ("indicators: [random]\nexecutor: rayy\n", "run.yaml: field 'executor': 'rayy' is not a registered executor"),
    ("indicators: [random]\nunit_threads: 0\n", "run.yaml: field 'unit_threads': must be at least 1"),
    ("indicators: [random]\neval_kernel: jit\n",
     "run.yaml: field 'eval_kernel': Input should be 'auto', 'autocast' or 'compiled' (got 'jit')"),
    ("indicators: [random]\nprecision: fp8\n",
     "run.yaml: field 'precision': Input should be 'auto', 'bf16' or 'fp32' (got 'fp8')"),
    ("indicators: [random]\ntrain_attention: flash\n", "run.yaml: field 'train_attention': Input should be 'auto'"),
    ("indicators: [random]\nseeds: [true]\n", "run.yaml: field 'seeds': takes numbers, not true or false"),
    ("indicators: [random]\nprompts_per_pass: true\n", "run.yaml: field 'prompts_per_pass': takes numbers, not true"),
    ("indicators: [random]\nray_num_cpus: 0\n", "run.yaml: field 'ray_num_cpus': must be at least 1, got 0"),
    ("indicators: [random]\ngpus_per_task: -0.5\n", "run.yaml: field 'gpus_per_task': must be a number of GPUs"),
    ("indicators: [[random]]\n", "run.yaml: field 'indicators.0': Input should be a valid string"),
    ("- random\n", "run.yaml: expected a mapping of fields at the top level"),
    ("suite: smoke\n", "no indicator to run"),
])
def test_bad_config_file_is_one_line_naming_file_and_field(tmp_path, monkeypatch, capsys, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(text)
    assert main(["run", "--config", "run.yaml"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and message in err[0], err


def test_a_flag_overriding_a_good_file_is_named_when_bad(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("indicators: [random]\nsuite: smoke\n")
    assert main(["run", "--config", "run.yaml", "--suite", "nope"]) == 2
    err = capsys.readouterr().err
    assert "error: --suite 'nope' does not load" in err and "run.yaml" not in err
    with pytest.raises(TransferbenchError, match="--transfer must be all or a transfer kind of the reference's protocol"):
        build_run_config({"transfer": "zero"})


def test_run_config_is_frozen_and_forbids_unknown_fields():
    config = RunConfig(indicators=["random"], suite="smoke")
    with pytest.raises(Exception):
        config.suite = "default"
    with pytest.raises(Exception, match="extra"):
        RunConfig(indicator=["random"])


@pytest.mark.parametrize("value, message", [
    ("0, 2,1", None), ([3], None), ((0, 1), None),
    ("0,0", "lists a seed twice ([0, 0]); each seed is one run"),
    ([1, 1], "lists a seed twice ([1, 1])"),
    ("-1", "takes integers from 0 to 4294967295, got [-1]"),
    ([2**32], "takes integers from 0 to 4294967295"),
    ("1.5", "takes integers separated by commas, got '1.5'"),
    ([1.5], "takes integers, got [1.5]"),
    ([True], "takes numbers, not true or false"),
    ("", "needs at least one seed"),
    ([], "needs at least one seed"),
    (3, "takes a list of integers, got 3"),
])
def test_one_seed_parser_for_every_entry_point(value, message):
    from transferbench.seeds import parse_seeds

    if message is None:
        assert parse_seeds(value) == ([0, 2, 1] if value == "0, 2,1" else list(value))
        return
    with pytest.raises(ValueError) as info:
        parse_seeds(value)
    assert message in str(info.value)
    if isinstance(value, list) and value and not isinstance(value[0], float):  # the run config reads them alike
        with pytest.raises(TransferbenchError, match=re.escape(message)):
            build_run_config({"indicators": ["random"], "seeds": value})
