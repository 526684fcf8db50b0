"""The `transferbench` command line: run the benchmark, print the leaderboard, list plugins and tasks.

User errors (unknown names, bad YAML, failing plugins) end with one `error:` line and exit status
2; anything else is a bug and keeps its traceback. Every console here has markup off: names,
paths and messages come from users and are printed literally (styles are passed as `style=`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from transferbench import inspect_neurons
from transferbench.errors import TransferbenchError

DEFAULT_SUBMISSIONS = Path("submissions")
DEFAULT_LEADERBOARD = Path("leaderboard")


MAX_SEED = 2**32 - 1  # numpy and torch seeds must fit; larger values overflow deep inside training


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, got {text!r}") from None
    if not seeds or any(not 0 <= seed <= MAX_SEED for seed in seeds):
        raise argparse.ArgumentTypeError(f"--seeds takes integers from 0 to {MAX_SEED}, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds lists a seed twice ({text!r}); each seed is one run")
    return seeds


def _backbone(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("--backbone is empty; give a packaged alias (e.g. minilm), a model folder "
                                         "or a Hugging Face id")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the benchmark for one or more indicators")
    run.add_argument("--indicator", "-i", action="append", required=True,
                     help="registered name (optionally name:param=value,...), path/to/file.py:ClassName, or all; repeatable")
    run.add_argument("--suite", default="default", help="task suite (default: %(default)s)")
    run.add_argument("--backbone", default="minilm", type=_backbone,
                     help="packaged alias, Hugging Face id or local path (default: %(default)s)")
    run.add_argument("--seeds", type=_seeds, default=None,
                     help="prompt-tuning seeds, e.g. 0,1,2 (default: the suite's seeds)")
    run.add_argument("--transfer", choices=["zero_shot", "init_gain", "all"], default="all",
                     help="measured transfer to evaluate against (default: %(default)s = both kinds)")
    run.add_argument("--submissions-dir", type=Path, default=DEFAULT_SUBMISSIONS)
    run.add_argument("--leaderboard-dir", type=Path, default=DEFAULT_LEADERBOARD)
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="where units of work run: local = in this process (default); ray = as Ray tasks "
                          "(needs pip install 'transferbench[ray]'; see docs/scaling.md)")
    run.add_argument("--ray-address", default=None,
                     help="address of a running Ray cluster (e.g. auto); default: start a local Ray instance")
    run.add_argument("--ray-num-cpus", type=int, default=None,
                     help="CPUs of the local Ray instance started without --ray-address (default: all cores)")
    run.add_argument("--gpus-per-task", type=float, default=0,
                     help="GPUs each Ray task reserves (default: %(default)s)")
    run.add_argument("--unit-threads", type=int, default=None,
                     help="PyTorch threads per unit of work, and CPUs per Ray task; CPU numerics depend on it, "
                          "so runs agree exactly only at equal values (default: all cores for local, 1 for ray)")

    board = commands.add_parser("leaderboard", help="rebuild the leaderboard from result files and print it")
    board.add_argument("--format", choices=["rich", "md", "csv", "json", "html"], default="rich",
                       help="rich: print tables; md/csv/json/html: write that format to standard output")
    board.add_argument("--open", action="store_true", help="open the generated leaderboard/index.html in a browser")
    board.add_argument("--submissions-dir", type=Path, default=DEFAULT_SUBMISSIONS)
    board.add_argument("--leaderboard-dir", type=Path, default=DEFAULT_LEADERBOARD)

    commands.add_parser("indicators", help="list indicators with their parameters")

    cache = commands.add_parser("cache", help="show the artifact cache's size and contents, or clear a stage")
    cache.add_argument("--clear", metavar="STAGE", action="append", default=[],
                       help="delete every artifact of a stage (prompts, transfer, skill_neurons, activations, "
                            "text_embedding, downloads, models); repeatable")

    tasks = commands.add_parser("tasks", help="list tasks and suites, or show one task")
    tasks.add_argument("action", nargs="?", choices=["show"], help="show one task's card and examples")
    tasks.add_argument("name", nargs="?")
    inspect_neurons.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Wide tables stay readable when output goes to a file or pipe (rich defaults to 80 columns).
    console = Console(markup=False) if sys.stdout.isatty() else Console(markup=False, width=200)
    try:
        return {"run": cmd_run, "leaderboard": cmd_leaderboard, "indicators": cmd_indicators,
                "tasks": cmd_tasks, "cache": cmd_cache,
                "neurons": inspect_neurons.run}[args.command](args, console)
    except TransferbenchError as exc:
        error_line = Text.assemble(("error:", "bold red"), f" {exc}")
        Console(stderr=True, markup=False).print(error_line, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; finished artifacts are cached and will be reused")
        return 130


def _check_output_folder(option: str, folder: Path) -> None:
    """Fail before any compute if `folder` cannot become a writable folder (a file is in the way,
    or its nearest existing parent is not writable)."""
    import os

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TransferbenchError(f"{option} {folder}: {existing} is not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TransferbenchError(f"{option} {folder}: {existing} is not writable; choose another path")


def cmd_run(args, console: Console) -> int:
    from transferbench.executors import make_executor
    from transferbench.indicator import make_indicator
    from transferbench.manifest import build_manifest
    from transferbench.results import make_result, write_result
    from transferbench.runner import Benchmark
    from transferbench.task import load_suite

    _check_output_folder("--submissions-dir", args.submissions_dir)
    _check_output_folder("--leaderboard-dir", args.leaderboard_dir)
    indicators = [make_indicator(spec) for spec in _expand_all(args.indicator)]  # fail fast on bad names
    suite = load_suite(args.suite)
    seeds = args.seeds if args.seeds is not None else list(suite.seeds)
    kinds = ["zero_shot", "init_gain"] if args.transfer == "all" else [args.transfer]
    executor = make_executor(args.executor, address=args.ray_address, num_cpus=args.ray_num_cpus,
                             num_gpus_per_task=args.gpus_per_task, threads_per_unit=args.unit_threads)
    started = time.perf_counter()
    bench = Benchmark(suite, args.backbone, seeds, console=Console(stderr=True, markup=False), executor=executor)
    with executor, bench.progress():
        # Pipeline order, each stage one batch of units: prompts, then every transfer pair, then
        # every artifact the indicators declare.
        bench.train_all()
        bench.measure_transfer(kinds)
        bench.prepare_artifacts({name for indicator in indicators for name in indicator.requires})
        transfers = {kind: bench.transfer(kind) for kind in kinds}
        scored = [(indicator, bench.indicator_scores(indicator)) for indicator in indicators]
    report = bench.task_report()
    data = {name: {"version": bench.tasks[name].version, "data_hash": bench.data(name).data_hash,
                   "source": bench.tasks[name].source.model_dump(mode="json")} for name in bench.tasks}
    config = {"suite": suite.model_dump(mode="json"), "backbone": bench.backbone_identity(),
              "prompt": bench.config.to_dict(), "seeds": seeds, "threads_per_unit": bench.context.threads}
    results = []
    for kind, (transfer, spread) in transfers.items():
        for indicator, scores in scored:
            defaults = indicator.defaults()
            params = {k: v for k, v in indicator.get_params().items() if defaults.get(k, object()) != v}
            manifest = build_manifest(
                {**config, "indicator": {"name": indicator.name, "params": indicator.get_params()}}, data,
                {"task_accuracy": report.to_dict(orient="records"),
                 "transfer_std_over_seeds": json.loads(spread.to_json()),
                 "wall_seconds": round(time.perf_counter() - started, 1)},
            )
            results.append(make_result(
                scores, transfer, indicator=indicator.name, suite=suite.name, backbone=args.backbone,
                transfer_kind=kind, seeds=seeds, params=params, description=indicator.description,
                baseline=indicator.baseline, manifest=manifest))
    # Results are written only once every indicator and transfer kind succeeded.
    paths = [write_result(result, args.submissions_dir) for result in results]
    _print_task_report(report, console)
    for path in paths:
        console.print(f"wrote {path}")
    _rebuild_and_print(args, console, only=(suite.name, args.backbone))
    console.print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def _expand_all(specs: list[str]) -> list[str]:
    """`--indicator all` stands for every registered indicator with default parameters."""
    from transferbench.indicator import all_indicator_names

    expanded: list[str] = []
    for spec in specs:
        expanded += all_indicator_names() if spec == "all" else [spec]
    return list(dict.fromkeys(expanded))


def _print_task_report(report, console: Console) -> None:
    table = Table(title="Own-prompt test accuracy (mean over seeds) vs majority class")
    for column in ("task", "family", "classes", "prompt acc", "majority"):
        table.add_column(column)
    for row in report.itertuples():
        table.add_row(row.task, row.family, str(row.classes), f"{row.test_accuracy:.3f}", f"{row.majority_accuracy:.3f}")
    console.print(table)


def _rebuild_and_print(args, console: Console, only: tuple[str, str] | None = None) -> None:
    from transferbench.leaderboard import build_tables, render_rich, write_leaderboard
    from transferbench.results import load_results

    results, problems = load_results(args.submissions_dir)
    write_leaderboard(results, args.leaderboard_dir, problems)
    tables = build_tables(results)
    if only is not None:
        tables = {key: table for key, table in tables.items() if key[:2] == only}
    render_rich(tables, console)
    for path, reason in problems:
        console.print(f"skipped {path}: {reason}", style="yellow", markup=False)


def cmd_leaderboard(args, console: Console) -> int:
    from transferbench.leaderboard import (
        build_tables, leaderboard_csv, leaderboard_json, open_in_browser, render_html, render_markdown,
    )
    from transferbench.results import load_results

    if args.format == "rich":
        _check_output_folder("--leaderboard-dir", args.leaderboard_dir)
        _rebuild_and_print(args, console)
        if args.open and not open_in_browser((args.leaderboard_dir / "index.html").resolve()):
            console.print(f"no browser found; open {args.leaderboard_dir / 'index.html'} yourself")
        return 0
    results, problems = load_results(args.submissions_dir)
    if args.format == "html":
        text = render_html(results, problems)
    elif args.format == "json":
        text = json.dumps(leaderboard_json(results, problems), indent=2, allow_nan=False)
    elif args.format == "csv":
        text = leaderboard_csv(build_tables(results))
    else:
        text = render_markdown(build_tables(results), problems)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_indicators(args, console: Console) -> int:
    from transferbench.indicator import INDICATORS, KINDS, all_indicator_names, measured_costs

    costs = measured_costs()
    seconds = costs.get("seconds_per_pair", {})
    suite = costs.get("setting", {}).get("suite")
    cost_column = f"ms per pair ({suite} suite)" if suite else "ms per pair"
    by_kind: dict[str, list[str]] = {}
    for name in all_indicator_names():
        by_kind.setdefault(INDICATORS.get(name).kind or "other", []).append(name)
    for kind in [*KINDS, *sorted(set(by_kind) - set(KINDS))]:
        if kind not in by_kind:
            continue
        table = Table(title=f"Indicators: {kind}")
        for column in ("name", "parameters (defaults)", cost_column, "description"):
            table.add_column(column)
        for name in by_kind[kind]:
            cls = INDICATORS.get(name)
            params = ", ".join(f"{k}={v!r}" for k, v in cls.defaults().items()) or "-"
            cost = f"{1000 * seconds[name]:.3g}" if name in seconds else "-"
            table.add_row(name, params, cost, cls.description)
        console.print(table)
    console.print("ms per pair: one score() call with its artifacts loaded (benchmarks/indicator_cost.py); "
                  "computing the artifacts is shared and cached, and not included.", markup=False)
    return 0


def cmd_cache(args, console: Console) -> int:
    from transferbench.store import ArtifactStore

    store = ArtifactStore()
    for stage in args.clear:  # every name is checked before anything is deleted
        store.check_clearable(stage)
    for stage in args.clear:
        console.print(f"removed {store.clear(stage)} files of stage {stage!r}", markup=False)
    table = Table(title=f"Artifact cache {store.root}")
    for column in ("stage", "files", "size"):
        table.add_column(column)
    rows = store.summary()
    for stage, count, size in rows:
        table.add_row(stage, str(count), f"{size / 2**20:.1f} MiB")
    table.add_row("total", str(sum(r[1] for r in rows)), f"{sum(r[2] for r in rows) / 2**20:.1f} MiB")
    console.print(table)
    return 0


def _show_task(spec, console: Console) -> None:
    """A task's card (every YAML field) and a few training examples at smoke-suite sizes."""
    import yaml

    from transferbench.task import load_suite, load_task_data

    card = spec.model_dump(mode="json", exclude_none=True)
    console.print(Text.assemble((spec.name, "bold"), f" ({spec.family}, {spec.num_classes} classes)"))
    console.print(yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100).rstrip(), highlight=False)
    try:
        data = load_task_data(spec, load_suite("smoke"))
    except TransferbenchError as exc:
        console.print(f"no examples shown: {exc}", style="yellow", markup=False)
        return
    examples = Table(title=f"Examples (train split at smoke sizes; {data.source_size} usable examples in the source)")
    for column in ("label", "text", *(["text_pair"] if spec.is_pair else [])):
        examples.add_column(column, overflow="fold")
    for row in data.train.select(range(min(5, len(data.train)))):
        text = row["text"] if len(row["text"]) < 300 else row["text"][:300] + "..."
        examples.add_row(spec.label_names[row["label"]], text, *([row["text_pair"]] if spec.is_pair else []))
    console.print(examples)


def cmd_tasks(args, console: Console) -> int:
    from transferbench.task import list_suites, list_tasks, load_task

    if args.action == "show":
        if not args.name:
            raise TransferbenchError("usage: transferbench tasks show NAME")
        _show_task(load_task(args.name), console)
        return 0
    table = Table(title="Tasks")
    for column in ("name", "family", "classes", "labels", "source"):
        table.add_column(column)
    for spec in list_tasks():
        table.add_row(spec.name, spec.family, str(spec.num_classes), ", ".join(spec.label_names), spec.source.type)
    console.print(table)
    suites = Table(title="Suites")
    for column in ("name", "tasks", "train/dev/test"):
        suites.add_column(column)
    for suite in list_suites():
        suites.add_row(suite.name, ", ".join(suite.tasks), f"{suite.train}/{suite.dev}/{suite.test}")
    console.print(suites)
    return 0


if __name__ == "__main__":
    sys.exit(main())
