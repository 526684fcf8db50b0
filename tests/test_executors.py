"""Executors: units of work are pure functions, and running them as Ray tasks gives the results
of running them in-process, even when a worker dies mid-task."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

from transferbench.cli import main
from transferbench.errors import TransferbenchError
from transferbench.model.kernels import AUTO_KERNELS
from transferbench.pipeline import units
from transferbench.pipeline.artifacts import ARTIFACTS, Address
from transferbench.pipeline.executors import LocalExecutor, RayExecutor, Unit, make_executor
from transferbench.pipeline.runner import Benchmark
from transferbench.reference.bundle import BundleArtifacts
from transferbench.reference.protocol import TRANSFER_KINDS
from transferbench.reference.protocol import measured_cells
from transferbench.tasks import load_suite, suite_tasks

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'transferbench[ray]')")

INDICATORS = ["skill_overlap", "activation_overlap", "embedding_similarity", "task_embedding", "data_size", "random"]
DIE_ONCE_MARKER = "TRANSFERBENCH_TEST_DIE_ONCE_MARKER"


def assert_same_artifact(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], torch.Tensor):
            assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
        else:
            assert a[name] == b[name], name


def test_local_executor_runs_units_in_order_and_reports_each_result():
    seen = []
    results = LocalExecutor().run([Unit(pow, (2, 3)), Unit(pow, (3, 2))], "powers",
                                  on_result=lambda index, result: seen.append((index, result)))
    assert results == [8, 9] and seen == [(0, 8), (1, 9)]


def test_threads_per_unit_are_part_of_the_context():
    assert LocalExecutor(threads=1).threads_per_unit == 1
    assert RayExecutor(cpus_per_task=2).threads_per_unit == 2  # a task uses the CPUs it reserves
    with pytest.raises(TransferbenchError, match="--unit-threads"):
        make_executor("local", threads_per_unit=0)
    with pytest.raises(TransferbenchError, match="--ray-address needs --executor ray"):
        make_executor("local", address="auto")


def test_units_are_pure_same_inputs_give_bit_identical_tensors(cache, tiny_backbone, tiny_suite):
    bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), seeds=[0])
    ctx = bench.context
    assert pickle.loads(pickle.dumps(ctx)).fingerprint == ctx.fingerprint  # what a Ray worker receives
    assert dataclasses.replace(ctx, threads=ctx.threads + 1).fingerprint != ctx.fingerprint

    own = units.train_prompt_unit(ctx, "pos_a", 0)
    assert_same_artifact(own, units.train_prompt_unit(ctx, "pos_a", 0))
    other = units.train_prompt_unit(ctx, "topic_a", 0)["prompt"]
    prompt = own["prompt"]
    prompts = {"pos_a": prompt, "topic_a": other, None: None}  # None: the null prompt of the seed
    first, second = units.zero_shot_row_unit(ctx, "pos_b", 0, prompts), units.zero_shot_row_unit(ctx, "pos_b", 0, prompts)
    assert set(first) == set(prompts)
    for source in prompts:
        assert_same_artifact(first[source], second[source])
    for init in (prompt, None):
        assert_same_artifact(units.init_accuracy_unit(ctx, init, "pos_b", 0), units.init_accuracy_unit(ctx, init, "pos_b", 0))
    assert_same_artifact(units.skill_neurons_unit(ctx, "pos_a", 0, prompt), units.skill_neurons_unit(ctx, "pos_a", 0, prompt))
    for with_inputs in (False, True):
        assert_same_artifact(units.mask_activations_unit(ctx, "pos_a", 0, prompt, with_inputs),
                             units.mask_activations_unit(ctx, "pos_a", 0, prompt, with_inputs))
    assert_same_artifact(units.text_embedding_unit(ctx, "pos_a"), units.text_embedding_unit(ctx, "pos_a"))
    # the units never touched the store: only the driver writes it
    assert not cache.exists() or not [p for p in cache.rglob("*.pt") if p.parent.name != "models"]

    # the driver stores exactly what the unit returns, under the key earlier versions used
    assert_same_artifact(bench.source_prompt("pos_a", 0), own)
    assert bench.store.path("prompts", bench.store.key("prompts", bench.prompt_inputs("pos_a", 0))).exists()


def test_ray_without_the_extra_is_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(TransferbenchError, match=r"pip install 'transferbench\[ray\]'"):
        make_executor("ray")
    with pytest.raises(TransferbenchError, match="transferbench"):
        RayExecutor().run([Unit(pow, (2, 3))], "powers")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "-i", "random", "--suite", "smoke", "--executor", "ray"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--executor ray needs the optional extra" in err[0]


def _run(folder: Path, cache: Path, suite: Path, backbone: Path, monkeypatch, *extra: str) -> dict[str, dict]:
    """One CLI run in `folder` with its own cache; returns each result file's scores/transfer/metrics."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(cache))
    args = ["run", "--submit", "--suite", str(suite), "--backbone", str(backbone), *extra]
    for name in INDICATORS:
        args += ["-i", name]
    assert main(args) == 0
    results = {}
    for path in sorted((folder / "submissions").glob("*.json")):
        data = json.loads(path.read_text())
        # two independent builds of one reference differ in their build record (times), hence hash
        results[path.name.rsplit("__ref-", 1)[0]] = {k: data[k] for k in ("scores", "transfer", "metrics")}
    assert len(results) == len(TRANSFER_KINDS) * len(INDICATORS)
    assert not list(cache.rglob("*.tmp")), "a half-written artifact was left in the store"
    return results


def _stored(cache: Path) -> set[str]:
    return {str(p.relative_to(cache)) for stage in ("prompts", "transfer", "skill_neurons", "activations",
                                                     "text_embedding") for p in (cache / stage).glob("*.pt")}


@needs_ray
def test_ray_executor_gives_the_same_results_as_local(tmp_path, tiny_backbone, monkeypatch):
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks")
    # Ray tasks run PyTorch on one thread each; so does this local run (CPU numerics depend on it).
    local = _run(tmp_path / "local", tmp_path / "cache_local", suite, tiny_backbone, monkeypatch,
                 "--executor", "local", "--unit-threads", "1")
    remote = _run(tmp_path / "ray", tmp_path / "cache_ray", suite, tiny_backbone, monkeypatch,
                  "--executor", "ray", "--ray-num-cpus", "2")
    assert remote == local
    # the driver wrote every artifact the workers returned, under the same keys as the local run
    assert _stored(tmp_path / "cache_ray") == _stored(tmp_path / "cache_local")


def train_prompts_dying_once(ctx, pairs):
    """`units.train_prompts_unit`, except that the first call anywhere kills its worker process."""
    marker = Path(os.environ[DIE_ONCE_MARKER])
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return units.train_prompts_unit(ctx, pairs)
    os._exit(1)  # a crash mid-task: no exception, no cleanup, the worker is gone


@needs_ray
def test_worker_dying_mid_task_is_retried_and_results_are_unchanged(tmp_path, tiny_backbone, monkeypatch):
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks")
    local = _run(tmp_path / "local", tmp_path / "cache_local", suite, tiny_backbone, monkeypatch, "--unit-threads", "1")

    marker = tmp_path / "worker_died"
    monkeypatch.setenv(DIE_ONCE_MARKER, str(marker))
    # Ray workers (started by this test's local Ray instance) import this module by name.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(units, "train_prompts_unit", train_prompts_dying_once)  # the prompts' declared unit
    remote = _run(tmp_path / "ray", tmp_path / "cache_ray", suite, tiny_backbone, monkeypatch,
                  "--executor", "ray", "--ray-num-cpus", "2")
    assert marker.exists(), "no worker was killed"
    assert remote == local
    assert _stored(tmp_path / "cache_ray") == _stored(tmp_path / "cache_local")


def test_second_run_runs_no_unit(tmp_path, tiny_backbone, monkeypatch):
    from conftest import build_tiny_suite

    suite = build_tiny_suite(tmp_path / "tasks")
    first = _run(tmp_path / "first", tmp_path / "cache", suite, tiny_backbone, monkeypatch)

    def fail(*args, **kwargs):
        raise AssertionError("a unit of work ran although its artifact was stored")

    for name, spec in ARTIFACTS.items():  # every unit an artifact is declared with
        if isinstance(spec.unit, str):
            monkeypatch.setattr(units, spec.unit.partition(":")[2], fail)
    assert _run(tmp_path / "second", tmp_path / "cache", suite, tiny_backbone, monkeypatch) == first


def _measured(bench: Benchmark) -> dict:
    """Every prompt and init-transfer accuracy of `bench` (trains and measures what is missing)."""
    bench.ensure(measured_cells(["init_gain"]))  # the cells of that transfer kind: "init"
    out = {}
    for seed in bench.seeds:
        for target in bench.tasks:
            out[target, seed] = bench.source_prompt(target, seed)["prompt"]
            for source in [None, *bench.tasks]:
                if source != target:
                    out[source, target, seed] = bench.get("init", task=target, seed=seed, source=source)["accuracy"]
    return out


def test_prompts_per_pass_trains_fixed_groups_deterministically_and_keys_them(tmp_path, monkeypatch, tiny_backbone, tiny_suite):
    """--prompts-per-pass K: prompts (and init-transfer arms) train K at a time in fixed groups; the
    same run twice gives the same numbers, a resumed run retrains a lost prompt with its group and
    gets it back exactly, the cache keys differ from one-at-a-time training, and the numbers stay
    within rounding of it (bf16 autocast rounds differently for the longer padded batch)."""
    suite = load_suite(str(tiny_suite))
    runs = {}
    for name, per_pass in (("one", 1), ("grouped", 2), ("again", 2)):
        monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / name))
        bench = Benchmark(suite, str(tiny_backbone), seeds=[0], prompts_per_pass=per_pass)
        runs[name] = (bench, _measured(bench))
    (one, a), (grouped, b), (_, c) = runs["one"], runs["grouped"], runs["again"]
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(b[k], c[k]) for k in b)  # deterministic
    assert all(torch.allclose(a[k], b[k], atol=0.05) for k in a if len(k) == 2)
    assert grouped.key("prompts", Address("pos_a", 0)) != one.key("prompts", Address("pos_a", 0))
    # resume: lose one prompt, retrain: its fixed group is retrained and it comes back bit-identical
    task = next(iter(grouped.tasks))
    grouped.store.path("prompts", grouped.key("prompts", Address(task, 0))).unlink()
    grouped.forget()
    grouped.ensure(["prompts"])
    assert torch.equal(grouped.source_prompt(task, 0)["prompt"], b[task, 0])
    with pytest.raises(TransferbenchError, match="--prompts-per-pass"):
        Benchmark(suite, str(tiny_backbone), seeds=[0], prompts_per_pass=0)


def test_train_attention_keys_trained_prompts_and_shipped_ones_by_their_build(tiny_backbone, tiny_suite):
    """The attention kernel of training steps keys the prompts a benchmark trains (`auto` resolved
    first, sdpa leaving the keys as they always were); prompts taken from a shipped reference are
    keyed by the attention its build recorded, whatever this benchmark would train with."""
    from types import SimpleNamespace

    suite = load_suite(str(tiny_suite))
    task = suite_tasks(suite)[0].name
    benches = {kernel: Benchmark(suite, str(tiny_backbone), seeds=[0], train_attention=kernel, precision="bf16")
               for kernel in ("auto", "sdpa", "eager", "eager-compiled")}
    default = Benchmark(suite, str(tiny_backbone), seeds=[0])  # auto: the table's kernel for this CPU's precision
    assert default.train_attention == AUTO_KERNELS["cpu", default.precision.name][0]
    assert benches["auto"].train_attention == AUTO_KERNELS["cpu", "bf16"][0] == "eager"  # bf16 on a CPU
    assert benches["auto"].context.train_attention == "eager"
    assert "train_attention" not in benches["sdpa"].prompt_inputs(task, 0)
    assert benches["eager"].prompt_inputs(task, 0)["train_attention"] == "eager"
    own = Address(task, 0)
    assert benches["auto"].key("prompts", own) == benches["eager"].key("prompts", own) != benches["sdpa"].key("prompts", own)
    assert benches["eager-compiled"].key("prompts", own) not in {benches[k].key("prompts", own) for k in ("sdpa", "eager")}
    with pytest.raises(TransferbenchError, match="--train-attention must be one of"):
        Benchmark(suite, str(tiny_backbone), seeds=[0], train_attention="flash")
    for build, expected in (({}, benches["sdpa"]), ({"train_attention": "eager"}, benches["eager"])):
        shipped = SimpleNamespace(root=tiny_suite.parent, prompts={f"{task}/0": None}, info={"build": build})
        bench = Benchmark(suite, str(tiny_backbone), seeds=[0], supplied=BundleArtifacts(shipped), train_attention="auto",
                          precision="bf16")
        assert bench.prompt_inputs(task, 0) == expected.prompt_inputs(task, 0)


def test_eval_kernel_keys_what_it_evaluates_and_shipped_prompts_by_their_build(tiny_backbone, tiny_suite):
    """The evaluation kernel keys the prompts a benchmark trains (dev selection runs on it) and
    every transfer cell it evaluates; `autocast` (the default) leaves the keys as they always were;
    prompts of a shipped reference are keyed by the kernel its build recorded; the units run it."""
    from types import SimpleNamespace

    suite = load_suite(str(tiny_suite))
    task, target = [spec.name for spec in suite_tasks(suite)][:2]
    benches = {kernel: Benchmark(suite, str(tiny_backbone), seeds=[0], eval_kernel=kernel, precision="bf16",
                                 train_attention="sdpa")
               for kernel in ("autocast", "compiled")}
    default = Benchmark(suite, str(tiny_backbone), seeds=[0])
    assert default.eval_kernel == AUTO_KERNELS["cpu", default.precision.name][1] == "autocast"
    assert benches["compiled"].context.eval_kernel == "compiled"
    assert "eval_kernel" not in benches["autocast"].prompt_inputs(task, 0)
    assert benches["compiled"].prompt_inputs(task, 0)["eval_kernel"] == "compiled"
    for name in ("prompts", "zero_shot", "init"):
        address = Address(task, 0) if name == "prompts" else Address(target, 0, task)
        assert benches["compiled"].key(name, address) != benches["autocast"].key(name, address), name
    null_keys = {k: b.key("zero_shot", Address(target, 0)) for k, b in benches.items()}
    assert null_keys["compiled"] != null_keys["autocast"]  # the null prompt's cell is evaluated too
    with pytest.raises(TransferbenchError, match="--eval-kernel must be one of auto, autocast, compiled"):
        Benchmark(suite, str(tiny_backbone), seeds=[0], eval_kernel="jit")
    for build, expected in (({}, benches["autocast"]), ({"eval_kernel": "compiled"}, benches["compiled"])):
        shipped = SimpleNamespace(root=tiny_suite.parent, prompts={f"{task}/0": None}, info={"build": build})
        bench = Benchmark(suite, str(tiny_backbone), seeds=[0], supplied=BundleArtifacts(shipped), precision="bf16")
        assert bench.prompt_inputs(task, 0) == expected.prompt_inputs(task, 0)
    row = units.zero_shot_row_unit(benches["compiled"].context, target, 0, {None: None})
    assert isinstance(units.loaded(benches["compiled"].context).backbone._compiled.get(torch.bfloat16),
                      torch._dynamo.eval_frame.OptimizedModule)  # the unit ran the compiled copy
    assert row[None]["predictions"].shape == (len(benches["compiled"].encoded(target, "test")),)
