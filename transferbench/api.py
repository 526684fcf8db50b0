"""The library entry points: score indicators against a reference and build or verify references.

`run` is the one orchestration: the command line (`transferbench.cli`) parses its arguments into a
`RunConfig`, calls it and prints, so a notebook gets exactly what `transferbench run` computes and
writes::

    import transferbench
    results = transferbench.run(indicators=["random"], suite="smoke")
    results.table()          # one row per (indicator, transfer kind): pandas DataFrame
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd
from rich.console import Console

from transferbench.errors import TransferbenchError
from transferbench.reference.bundle import Reference
from transferbench.reference import protocol

if TYPE_CHECKING:
    from transferbench.run_config import RunConfig


@dataclass
class Results:
    """What `run` produced: one result file per (indicator, transfer kind), the reference, the
    validated settings, and the files written (`written`: (path, "wrote" | "replaced" | "unchanged"),
    in the order of `results`; `paths`: their paths)."""

    results: list  # transferbench.evaluation.results.ResultFile
    reference: Reference
    wall_seconds: float
    paths: list[Path] = field(default_factory=list)
    written: list[tuple[Path, str]] = field(default_factory=list)
    config: RunConfig | None = None

    def table(self) -> pd.DataFrame:
        """One row per (transfer kind, indicator): mean ρ with its CI and the secondary metrics."""
        rows = []
        for result in self.results:
            rows.append({"transfer_kind": result.transfer_kind, "indicator": result.indicator.label(),
                         "baseline": result.indicator.baseline, **result.metrics.summary()})
        return pd.DataFrame(rows)

    def per_target(self) -> pd.DataFrame:
        """Per-target metrics of every (transfer kind, indicator)."""
        rows = []
        for result in self.results:
            for target in result.metrics.per_target:
                rows.append({"transfer_kind": result.transfer_kind, "indicator": result.indicator.label(),
                             **target.model_dump()})
        return pd.DataFrame(rows)


def protocol_work(bench, protocol_version: int = protocol.BUILD_PROTOCOL) -> dict[str, int]:
    """Examples the backbone processes to measure `bench`'s reference with protocol
    `protocol_version` from a cold cache (what `reference.collect` runs), by kind of pass: the cost
    models of the artifacts it reads (`reference.protocol_artifacts`, declared in
    `transferbench.pipeline.artifacts`) at the suite's sizes.

    For the built-in kinds: `train` (forward + backward) every (task, seed) prompt's `steps`
    batches, and for every target and seed the n initialisation arms (n - 1 source prompts and the
    default initialisation), each `init_steps` batches; `eval` (forward only) each prompt's dev
    evaluations (every `eval_every` steps and at the last), and per target and seed 2n + 1 test
    passes (the own prompt, n zero-shot sources including the null prompt, n initialisation arms),
    plus the linear probe's train and test features once per task.
    """
    from transferbench.reference.bundle import protocol_artifacts

    work = bench.cold_work(protocol_artifacts(protocol_version))
    return {"train": work.train, "eval": work.eval}


def shipped_reference(bench) -> Reference | None:
    """The reference bundle whose prompts and cells `bench` reads, if it reads one."""
    from transferbench.reference.bundle import BundleArtifacts

    return bench.supplied.reference if isinstance(bench.supplied, BundleArtifacts) else None


def reference_protocol(bench) -> protocol.Protocol:
    """The protocol of the reference `bench` scores against: the shipped bundle's it reads, else
    the one `ensure_reference` measures with (`protocol.BUILD_PROTOCOL`)."""
    shipped = shipped_reference(bench)
    return protocol.PROTOCOLS[shipped.protocol_version if shipped is not None else protocol.BUILD_PROTOCOL]


def scored_kinds(bench, config: RunConfig) -> list[str]:
    """The transfer kinds `config` asks for, "all" being every kind of the reference's protocol
    (`reference_protocol`); a kind of another protocol only is one TransferbenchError line naming
    the kinds this reference has. Known before any compute: a shipped reference is read by then."""
    used = reference_protocol(bench)
    kinds = config.transfer_kinds(used.kinds.names())
    missing = protocol.missing_kind(kinds, used.version)
    if missing is not None:
        shipped = shipped_reference(bench)
        what = (f"the shipped reference {shipped.root.name} ({shipped.hash[:12]})" if shipped is not None
                else f"the reference of suite {bench.suite.name} that transferbench measures")
        raise TransferbenchError(f"transfer kind {missing!r} is not one of {what}, measured with protocol "
                                 f"{used.version}: its kinds are {', '.join(used.kinds)} (or all)")
    return kinds


def _roughly(seconds: float) -> str:
    minutes = seconds / 60
    return f"roughly {max(1, round(minutes))} min" if minutes < 90 else f"roughly {minutes / 60:.1f} h"


def _measured(cost) -> str:
    return (f"at the rate measured on this machine ({cost.eval_seconds * 1e3:.3g} ms per evaluation example, "
            f"{cost.train_seconds * 1e3:.3g} ms per training example)")


def build_estimate(bench, cost=None, protocol_version: int = protocol.BUILD_PROTOCOL) -> str:
    """How long measuring `bench`'s reference with protocol `protocol_version` takes from a cold
    cache, as a phrase: `protocol_work` at `cost` (a `transferbench.progress.ExampleCost`; default:
    measured now on this machine with the benchmark's backbone, precision and kernels,
    `transferbench.pipeline.calibration.example_cost`)."""
    from transferbench.pipeline.calibration import example_cost
    from transferbench.progress import Work

    n_tasks, n_seeds = len(bench.tasks), len(bench.seeds)
    cost = cost or example_cost(bench)
    work = protocol_work(bench, protocol_version)
    seconds = cost.seconds(Work(train=work["train"], eval=work["eval"]))
    bound = ("at most (transfer is measured into admitted targets only)"
             if protocol.PROTOCOLS[protocol_version].admitted_targets_only else "")
    return (f"{n_tasks * n_seeds} prompts and {n_tasks * (n_tasks - 1) * n_seeds} ordered pairs of each transfer kind: "
            f"{_roughly(seconds)} {_measured(cost)} from a cold cache{', ' + bound if bound else ''} "
            "(less for what the cache holds)")


def compute_line(bench) -> str:
    """How this benchmark computes, as one line printed before compute: device, precision (and why),
    and the kernels its `auto` settings resolved to."""
    line = f"computing on {bench.device} in {bench.precision.phrase()}"
    if bench.trains_prompts:
        line += f"; kernels: training attention {bench.train_attention}, evaluation {bench.eval_kernel}"
    else:
        line += "; the shipped reference's prompts are read as they are (no kernel choice retrains them)"
    return line


def score_plan(bench, indicators: Sequence, cost=None) -> str:
    """What scoring `indicators` on `bench` involves, as one line: tasks, prompts and pairs, where
    the reference and the cache are, and how long the compute takes from a cold cache at `cost`
    (default: measured on this machine when there is compute to estimate, see `build_estimate`)."""
    from transferbench.pipeline.calibration import example_cost

    n_tasks, n_seeds = len(bench.tasks), len(bench.seeds)
    artifacts = {name for indicator in indicators for name in indicator.requires}
    line = (f"suite {bench.suite.name}: {n_tasks} tasks x {len(bench.seeds)} seeds = {n_tasks * n_seeds} prompts, "
            f"{n_tasks * (n_tasks - 1)} ordered pairs per seed and transfer kind; cache {bench.store.root}; ")
    shipped = shipped_reference(bench)
    if shipped is not None:
        line += f"prompts and transfer from the shipped reference {shipped.hash[:12]} (nothing to train)"
    else:
        cost = cost or example_cost(bench)
        line += f"no shipped reference: measured first ({build_estimate(bench, cost)})"
    # prompts and transfer come from the reference (counted above when it is measured first)
    from transferbench.reference.bundle import protocol_artifacts

    work = bench.cold_work(sorted(artifacts), skip=protocol_artifacts(reference_protocol(bench).version))
    examples = work.train + work.eval
    if examples:
        cost = cost or example_cost(bench)
        line += (f"; the indicators' artifacts ({', '.join(sorted(artifacts))}) read {examples} examples: "
                 f"{_roughly(cost.seconds(work))} {_measured(cost)} from a cold cache, less for what "
                 "the cache holds")
    return line


def benchmark_for(suite: str, backbone: str = "minilm", seeds: Sequence[int] | None = None, executor=None,
                  console: Console | None = None, use_shipped: bool = True, device: str = "cpu",
                  prompts_per_pass: int = 1, train_attention: str = "auto", eval_kernel: str = "auto",
                  precision: str = "auto"):
    """A `Benchmark` on the shipped reference of (suite, backbone) when there is one that matches
    the suite's content, backbone, seeds and data; else one that will measure its own."""
    from transferbench.pipeline.runner import Benchmark
    from transferbench.reference.bundle import BundleArtifacts, load_shipped
    from transferbench.reference.verify import suite_problem
    from transferbench.tasks import load_suite

    spec = load_suite(suite)
    seeds = list(seeds) if seeds is not None else list(spec.seeds)
    console = console or Console(stderr=True, markup=False)
    shipped = load_shipped(spec.name, backbone) if use_shipped else None
    kernels = {"prompts_per_pass": prompts_per_pass, "train_attention": train_attention, "eval_kernel": eval_kernel,
               "precision": precision}
    bench = Benchmark(spec, backbone, seeds, console=console, executor=executor, device=device,
                      supplied=BundleArtifacts(shipped) if shipped is not None else None, **kernels)
    if shipped is not None:
        problem = suite_problem(shipped, bench)
        if problem:
            console.print(f"not using the shipped reference {shipped.root.name} ({shipped.hash[:12]}): {problem}")
            bench = Benchmark(spec, backbone, seeds, console=console, executor=executor, device=device, **kernels)
    return bench


def ensure_reference(bench, console: Console | None = None) -> Reference:
    """The benchmark's reference: the shipped one, or one measured now and saved in the cache
    (`<cache>/references/`, one folder per device and kernels, so it has a hash and is measured
    once; measured again when a transfer kind registered since lacks from it, or when it was
    measured with another protocol than `protocol.BUILD_PROTOCOL`). From then on the
    benchmark reads its prompts from that bundle (`reference.BundleArtifacts`)."""
    from transferbench.reference.bundle import BundleArtifacts, bundle_name, collect, read_bundle, save
    from transferbench.reference.verify import suite_problem
    from transferbench.store import content_key

    shipped = shipped_reference(bench)
    if shipped is not None:
        return shipped
    console = console or bench.console
    for task in bench.tasks:  # bad data is one error line before anything is announced or computed
        bench.data(task)
    # keyed like every artifact it is measured from: a reference measured with another device or
    # kernel (`--eval-kernel`, `--train-attention`, `--prompts-per-pass`) is another reference
    compute = bench.device_key()
    name = bundle_name(bench.suite.name, bench.backbone_name) + (f"__{content_key(compute)[:12]}" if compute else "")
    folder = bench.store.root / "references" / name
    # How its prompts were trained and evaluated: artifacts computed later from the bundle's prompts
    # are keyed by this record (`BundleArtifacts.training`), so it must say what this benchmark ran.
    training = {"train_attention": bench.train_attention, "prompts_per_pass": bench.prompts_per_pass,
                "eval_kernel": bench.eval_kernel}
    if (folder / "MANIFEST.json").is_file():
        try:
            cached = read_bundle(folder, None)
        except TransferbenchError:
            cached = None  # corrupt: measured again below (the store still holds its cells)
        supply = BundleArtifacts(cached) if cached is not None else None
        built_with = protocol.PROTOCOLS[protocol.BUILD_PROTOCOL]  # what `collect` below measures
        if (supply is not None and not suite_problem(cached, bench) and cached.protocol_version == built_with.version
                and set(built_with.kinds) <= set(cached.transfer) and supply.training == training):
            bench.use_supplied(supply)
            return cached
    console.print(f"no shipped reference for suite {bench.suite.name} on {bench.backbone_name} with seeds "
                  f"{bench.seeds}: measuring it first ({build_estimate(bench)})")
    reference = collect(bench, build_manifest=training)
    save(reference, folder)
    saved = read_bundle(folder, reference.hash)
    bench.use_supplied(BundleArtifacts(saved))
    return saved


def score(bench, indicators: Sequence, kinds: Sequence[str] | None = None, started: float | None = None,
          hidden: Sequence[Path | str] = ()) -> list:
    """Score each indicator against the benchmark's reference: one ResultFile per (kind, indicator);
    `kinds` default: every transfer kind of the reference's protocol. `hidden`: folders hidden from
    the sealed scoring process (`RunConfig.output_folders`)."""
    from transferbench.evaluation.results import make_result
    from transferbench.manifest import build_manifest
    from transferbench.scoring.sandbox import code_of

    started = started if started is not None else time.perf_counter()
    reference = ensure_reference(bench)
    bench.ensure(sorted({name for indicator in indicators for name in indicator.requires}))
    from transferbench.scoring.pairs import indicator_scores

    scored = [(indicator, indicator_scores(bench, indicator, hidden)) for indicator in indicators]
    data = {name: {"version": bench.tasks[name].version, "data_hash": bench.data(name).data_hash,
                   "source": bench.tasks[name].source.model_dump(mode="json")} for name in bench.tasks}
    config = {"suite": bench.suite.model_dump(mode="json"), "backbone": bench.backbone_identity(),
              "prompt": bench.config.to_dict(), "seeds": bench.seeds, "threads_per_unit": bench.context.threads,
              "device": str(bench.device), "precision": bench.precision.record(),
              "reference": reference.hash}
    if bench.prompts_per_pass > 1:  # recorded only when used, so earlier result files stay byte-identical
        config["prompts_per_pass"] = bench.prompts_per_pass
    if bench.trains_prompts and bench.train_attention != "sdpa":  # the kernel that trained this run's prompts
        config["train_attention"] = bench.train_attention
    if bench.trains_prompts and bench.eval_kernel != "autocast":  # the kernel that evaluated this run's reference
        config["eval_kernel"] = bench.eval_kernel
    if kinds is None:
        kinds = protocol.PROTOCOLS[reference.protocol_version].kinds.names()
    results = []
    for kind in kinds:
        transfer = reference.matrix(kind)
        for indicator, scores in scored:
            defaults = indicator.defaults()
            params = {k: v for k, v in indicator.get_params().items() if defaults.get(k, object()) != v}
            manifest = build_manifest(
                {**config, "indicator": {"name": indicator.name, "params": indicator.get_params()}}, data,
                {"wall_seconds": round(time.perf_counter() - started, 1)})
            results.append(make_result(
                scores, transfer, indicator=indicator.name, suite=bench.suite.name, backbone=bench.backbone_name,
                transfer_kind=kind, seeds=bench.seeds, params=params, description=indicator.description,
                baseline=indicator.baseline, manifest=manifest, reference=reference.hash,
                excluded_targets=reference.excluded_targets(), families=reference.families(),
                transfer_per_seed=reference.per_seed(kind), code=code_of(indicator)))
    return results


def _validated(config: RunConfig | None, fields: dict, names: dict[str, str]) -> RunConfig:
    """`config` with `fields` overriding its values, validated as a `RunConfig` before any compute
    (the suite is loaded, seeds and backbone checked): a bad one is one line naming the argument as
    the caller spelt it (`names`: field -> argument, e.g. transfer -> kinds)."""
    from pydantic import ValidationError

    from transferbench.run_config import RunConfig

    arguments = {**(config.model_dump(exclude_unset=True) if config is not None else {}), **fields}
    try:
        return RunConfig.model_validate(arguments)
    except ValidationError as exc:
        first = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        message = first["msg"].removeprefix("Value error, ")
        message = message[0].lower() + message[1:] if message[:1].isupper() else message
        if first["type"] == "extra_forbidden":
            from transferbench.registry import did_you_mean

            message = "not a setting of transferbench.run" + did_you_mean(field, [*RunConfig.model_fields, "kinds"])
        raise TransferbenchError(f"transferbench.run: {names.get(field, field)}={arguments.get(field)!r}: "
                                 f"{message}") from None


def _as_list(value, argument: str, what: str) -> list:
    """`value` (a list, tuple or other iterable but a mapping or bytes) as a non-empty list."""
    try:
        items = [] if isinstance(value, (bytes, dict)) else list(value)
    except TypeError:
        items = []
    if not items:
        raise TransferbenchError(f"transferbench.run: {argument}={value!r}: give a non-empty list of {what}")
    return items


def executor_for(config: RunConfig):
    """The executor `config` names (`executor`, `ray_address`, ...); on a CUDA device a Ray task
    reserves one GPU unless told otherwise, since Ray hides every GPU from a task that reserves none."""
    from transferbench.model.backbone import resolve_device
    from transferbench.pipeline.executors import make_executor

    gpus = config.gpus_per_task
    if config.executor == "ray" and not gpus and resolve_device(config.device).type == "cuda":
        gpus = 1
    return make_executor(config.executor, address=config.ray_address, num_cpus=config.ray_num_cpus,
                         num_gpus_per_task=gpus, threads_per_unit=config.unit_threads)


def run(config: RunConfig | None = None, /, *, executor=None, console: Console | None = None,
        progress: str = "auto", write: bool = True, **fields) -> Results:
    """Score indicators against the reference of a suite and backbone (the shipped one, or measured
    first), and write their result files: the one orchestration, which `transferbench run` calls.

    Settings: a `transferbench.run_config.RunConfig`, or its fields as keyword arguments (fields
    given override the config's), each validated before anything is computed; a bad one is one
    `TransferbenchError` line naming it (`transferbench.run: seeds='0': ...`). `indicators` also
    takes Indicator subclasses (built with their default parameters) and instances besides the
    specs `--indicator` takes, and a single string or object is one indicator; `kinds` is another
    name of `transfer` (a list of transfer kinds, or one).

    Not settings: `executor` (an executor object; default: the one the config's `executor` names,
    which is what a name given here sets), `console` (where the run says what
    it computes; default: standard error, like the benchmark's notes and progress), `progress`
    (`auto`, `rich` or `plain`, see `transferbench.progress`) and `write`: the result files go where
    `transferbench run` writes them (`RunConfig.outputs`: your results folder, or with `submit` the
    project's `submissions_dir`), all or none, and a file that already holds the same result (but
    for its provenance manifest) is left untouched; `write=False` writes nothing but the cache.
    """
    from transferbench.evaluation.results import check_output_folder, write_results
    from transferbench.run_config import expand_all, flag
    from transferbench.scoring.indicator import Indicator, all_indicator_names, as_indicator, builtin_code
    from transferbench.scoring.sandbox import code_of, load_sealed

    names = {}
    if isinstance(executor, str):  # the config's field (a registered executor's name), not an executor
        fields["executor"], executor = executor, None
    if "kinds" in fields:
        if "transfer" in fields:
            raise TransferbenchError("transferbench.run: give transfer or kinds (another name of it), not both")
        fields["transfer"], names["transfer"] = fields.pop("kinds"), "kinds"
    objects: list = []
    if "indicators" in fields:
        given = fields["indicators"]
        single = isinstance(given, (str, Indicator)) or (isinstance(given, type) and issubclass(given, Indicator))
        objects = _as_list([given] if single else given, "indicators",
                           "indicator names, Indicator subclasses or instances")
        fields["indicators"] = [item for item in objects if isinstance(item, str)]
    config = _validated(config, fields, names)
    if not objects:
        objects = _as_list(config.indicators, "indicators", "indicator names, Indicator subclasses or instances")
    every = all_indicator_names() if any(isinstance(item, str) and item == "all" for item in objects) else []
    items = expand_all(objects, every)  # each "all" as every registered indicator, each indicator once
    # fail fast on bad names and broken plugins; a `file.py:Class` loads sealed: its top level, its
    # constructor and the contract check never run in this process
    built = [load_sealed(item, config.output_folders()) if isinstance(item, str) else as_indicator(item)
             for item in items]
    for indicator in built:  # built-in names belong to built-in code: no result of other code carries one
        builtin = builtin_code(indicator.name)
        code = code_of(indicator)
        if builtin is not None and (code is None or code["sha256"] != builtin["sha256"]):
            where = f"{code['qualname']} ({code['module']})" if code else type(indicator).__qualname__
            raise TransferbenchError(f"indicator {indicator.name!r} is the name of a built-in indicator, but {where} is "
                                     "other code; give your class a name of its own (registered_name)")
    outputs = config.outputs()
    if write:
        check_output_folder(flag("results_dir" if outputs.local else "submissions_dir"), outputs.results)
    console = console or Console(stderr=True, markup=False, soft_wrap=True)
    started = time.perf_counter()
    executor = executor or executor_for(config)
    console.print(f"loading the tasks of suite {config.suite} (downloads, when not cached, are named as they start) "
                  "and checking them against the shipped reference ...", highlight=False, soft_wrap=True)
    bench = benchmark_for(config.suite, config.backbone, config.seeds, executor=executor,
                          console=Console(stderr=True, markup=False, soft_wrap=True), device=config.device,
                          prompts_per_pass=config.prompts_per_pass, train_attention=config.train_attention,
                          eval_kernel=config.eval_kernel, precision=config.precision)
    kinds = scored_kinds(bench, config)
    console.print(compute_line(bench), highlight=False, soft_wrap=True)
    console.print(score_plan(bench, built), highlight=False, soft_wrap=True)
    with executor, bench.progress(progress):
        results = score(bench, built, kinds, started, hidden=config.output_folders())
    # written only once every indicator and transfer kind succeeded, and all or none; the project's
    # results with the inputs they were scored from, which `leaderboard --verify` re-scores them from
    from transferbench.leaderboard.verify import pack_files, pack_root, stale_pack_files
    from transferbench.reference.bundle import bundle_name

    packs, inputs = pack_root(config.submissions_dir), {}
    if write and not outputs.local:
        inputs = pack_files(bench, ensure_reference(bench).hash,
                            sorted({name for indicator in built for name in indicator.requires}), packs)
    written = write_results(results, outputs.results, also=inputs) if write else []
    for stale in stale_pack_files(packs, bundle_name(bench.suite.name, bench.backbone_name)) if inputs else []:
        stale.unlink()
    return Results(results=results, reference=ensure_reference(bench), wall_seconds=time.perf_counter() - started,
                   paths=[path for path, _ in written], written=written, config=config)

