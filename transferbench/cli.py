"""The `transferbench` command line: run the benchmark, print the leaderboard, list plugins and tasks.

User errors (unknown names, bad YAML, failing plugins) end with one `error:` line and exit status
2; Ctrl-C and SIGTERM with one "interrupted" line and 130 / 143 (finished artifacts stay cached);
anything else is a bug and keeps its traceback. Every console here has markup off: names,
paths and messages come from users and are printed literally (styles are passed as `style=`).

Over 400 lines because each subcommand's printing lives next to its parser; the work is library
calls (`transferbench.api`, `run_config`, `leaderboard`, `reference`), and splitting the printing
per command into modules is left until the concurrent work on the command functions has landed.
`run` is parsing into a `RunConfig`, `transferbench.run` and printing: the library call computes
and writes exactly what the command does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import get_args

from rich.console import Console
from rich.table import Table
from rich.text import Text

from transferbench.analysis import inspect_neurons
from transferbench.errors import Terminated, TransferbenchError
from transferbench.reference.protocol import BUILD_PROTOCOL, PROTOCOLS, kinds_by_version
from transferbench.run_config import DEFAULT_RESULTS, RunConfig, build_run_config, output_folders
from transferbench.store import STAGES
from transferbench.tasks.schema_errors import read_yaml

DEFAULT_SUBMISSIONS = Path("submissions")
DEFAULT_LEADERBOARD = Path("leaderboard")
SHARD_ACTIONS = ("status", "export", "import")  # `reference shards ACTION`


def _default(field: str) -> str:
    return str(RunConfig.model_fields[field].get_default(call_default_factory=True))


def _common_options() -> argparse.ArgumentParser:
    """The parent parser of the subcommands that build a benchmark (run, reference): suite,
    backbone and where units run. Every option's default is `RunConfig`'s: an option not given is
    absent from the parsed arguments, so a `--config` file's value stands unless a flag overrides it."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--suite", help=f"task suite (default: {_default('suite')})")
    common.add_argument("--backbone", help=f"packaged alias, Hugging Face id or local path (default: {_default('backbone')})")
    common.add_argument("--device",
                        help=f"auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps (default: {_default('device')})")
    common.add_argument("--executor",
                        help="where units of work run: local = in this process (default); ray = as Ray tasks "
                             "(needs pip install 'transferbench[ray]'; see docs/scaling.md)")
    common.add_argument("--ray-address",
                        help="address of a running Ray cluster (e.g. auto); default: start a local Ray instance")
    common.add_argument("--ray-num-cpus", type=int,
                        help="CPUs of the local Ray instance started without --ray-address (default: all cores)")
    common.add_argument("--gpus-per-task", type=float,
                        help=f"GPUs each Ray task reserves (default: {_default('gpus_per_task')})")
    common.add_argument("--unit-threads", type=int,
                        help="PyTorch threads per unit of work, and CPUs per Ray task; CPU numerics depend on it, "
                             "so runs agree exactly only at equal values (default: all cores for local, 1 for ray)")
    common.add_argument("--prompts-per-pass", type=int,
                        help="prompts trained together in one forward/backward pass when a reference is measured "
                             "(fills a GPU; numbers then differ from one-at-a-time training by rounding, so it keys "
                             f"the cache; default: {_default('prompts_per_pass')})")
    common.add_argument("--precision", choices=list(get_args(RunConfig.model_fields["precision"].annotation)),
                        help="floating-point precision of every forward and backward pass: auto = what the hardware "
                             "computes natively (bf16 on CPUs with AMX-BF16 or AVX512-BF16 and on GPUs with bf16, "
                             "fp16 on other GPUs, fp32 on other CPUs, where bf16 is emulated and ~60x slower); "
                             "numbers differ by rounding, so it keys the cache; a shipped reference is scored at any "
                             f"precision (default: {_default('precision')})")
    _kernel_option(common, "train_attention",
                   "attention implementation of prompt-training steps: sdpa (PyTorch's fused kernel; the shipped "
                   "references were built with it), eager (transformers' matmul-softmax-matmul), eager-compiled "
                   "(eager, with the training forward compiled by torch.compile: under a minute to compile per "
                   "process), or auto = the fastest uncompiled kernel measured for the device and precision "
                   "(kernels.AUTO_KERNELS, benchmarks/README.md)")
    _kernel_option(common, "eval_kernel",
                   "how evaluation (test predictions, zero-shot transfer, dev selection) computes when a reference is "
                   "measured: autocast (the encoder as loaded, under the run's precision; the shipped references' "
                   "kernel), compiled (a copy of the encoder in the run's precision compiled by torch.compile with "
                   "frozen weights: about 20 s to compile per process), or auto = the table's choice for the "
                   "device and precision")
    return common


def _kernel_option(parser: argparse.ArgumentParser, field: str, what: str) -> None:
    """`--<field>` choosing a compute kernel: its choices are the `RunConfig` field's values; every
    kernel but the default rounds differently, which the help says."""
    parser.add_argument("--" + field.replace("_", "-"), choices=list(get_args(RunConfig.model_fields[field].annotation)),
                        help=f"{what}; numbers differ by rounding, so it keys the cache (default: {_default(field)})")


def _apply_run_config(args) -> None:
    """Replace the run/reference options in `args` by one validated `RunConfig`: the `--config`
    file's values, overridden by the flags given (one error line naming the flag or file field)."""
    fields = RunConfig.model_fields
    given = {name: value for name, value in vars(args).items() if name in fields}
    config = build_run_config(given, getattr(args, "config", None))
    if args.command == "run" and not config.indicators:
        raise TransferbenchError("no indicator to run: give --indicator NAME (or `indicators:` in the --config file)")
    vars(args).update(config.model_dump())
    args.indicator = config.indicators
    args.run_config = config


def _add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", choices=["auto", "rich", "plain"], default="auto",
                        help="auto: bars on a terminal, plain lines otherwise; rich: bars; plain: a line per stage "
                             "at most every 15 s, for logs (default: %(default)s)")


def _add_board_options(parser: argparse.ArgumentParser, run: bool = False) -> None:
    """Options of the board a user views: which columns, and where their own results are (for
    `run` a `RunConfig` field: absent unless given, so a --config file's value stands)."""
    parser.add_argument("--columns", choices=["default", "all"], default="default",
                        help="terminal table: the columns that fit the terminal (default) or every column (all)")
    parser.add_argument("--results-dir", type=Path, default=argparse.SUPPRESS if run else None,
                        help="your results folder: result files under submissions/ (shown marked local), the board "
                             f"`run` writes under leaderboard/ (default: $TRANSFERBENCH_RESULTS, else ./{DEFAULT_RESULTS})")


def build_parser(neurons: bool = True) -> argparse.ArgumentParser:
    """The `transferbench` parser; `neurons=False` leaves out the `neurons` command, whose options
    import torch (for their defaults): `main` does so for the other commands, so that `run` can
    print its first line within a second of starting."""
    parser = argparse.ArgumentParser(prog="transferbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    common = _common_options()
    run = commands.add_parser("run", parents=[common], argument_default=argparse.SUPPRESS,
                              help="run the benchmark for one or more indicators")
    run.add_argument("--config", type=Path, default=None,
                     help="a YAML file of run settings (the fields of transferbench.run_config.RunConfig: "
                          "indicators, suite, seeds, ...); flags given on the command line override its values")
    run.add_argument("--indicator", "-i", action="append", dest="indicators",
                     help="registered name (optionally name:param=value,...), path/to/file.py:ClassName, or all; repeatable")
    run.add_argument("--seeds", help="prompt-tuning seeds, e.g. 0,1,2 (default: the suite's seeds)")
    run.add_argument("--transfer", help="measured transfer to evaluate against: a transfer kind of the protocol of the "
                                        f"suite's reference (protocol {kinds_by_version()}) or all (default: "
                                        f"{_default('transfer')} = every kind of that protocol; see docs/protocol.md)")
    run.add_argument("--submit", action="store_true", default=argparse.SUPPRESS,
                     help="write the results into the project's --submissions-dir and rebuild its --leaderboard-dir "
                          "(default: into your results folder, see --results-dir)")
    run.add_argument("--submissions-dir", type=Path,
                     help="the project's result files: shown beside yours, written only with --submit "
                          f"(default: {_default('submissions_dir')})")
    run.add_argument("--leaderboard-dir", type=Path,
                     help=f"the project's generated board, rebuilt only with --submit (default: {_default('leaderboard_dir')})")
    _add_progress_option(run)
    _add_board_options(run, run=True)

    board = commands.add_parser("leaderboard", help="print the leaderboard from result files (writes files only with --write)")
    board.add_argument("--format", choices=["rich", "md", "csv", "json", "html"], default="rich",
                       help="rich: print tables; md/csv/json/html: write that format to standard output")
    board.add_argument("--write", action="store_true",
                       help="rebuild --leaderboard-dir from --submissions-dir (only files whose content changes)")
    board.add_argument("--open", action="store_true", help="open the generated leaderboard/index.html in a browser")
    _add_board_options(board)
    board.add_argument("--submissions-dir", type=Path, default=DEFAULT_SUBMISSIONS,
                       help="the project's result files (default: %(default)s)")
    board.add_argument("--leaderboard-dir", type=Path, default=DEFAULT_LEADERBOARD,
                       help="where --write puts the generated board (default: %(default)s)")
    board.add_argument("--verify", action="store_true",
                       help="re-score each official row with its indicator, sealed, from the verification input "
                            "pack, and mark it verified when its scores equal the file's (--write always does); "
                            "exit status 1 when a re-scored row does not reproduce")
    board.add_argument("--pack-dir", type=Path, default=None,
                       help="the verification input packs (default: verification/ beside --submissions-dir)")

    commands.add_parser("indicators", help="list indicators with their parameters")

    cache = commands.add_parser("cache", help="show the artifact cache's size and contents, or clear a stage")
    cache.add_argument("--clear", metavar="STAGE", action="append", default=[],
                       help=f"delete every artifact of a stage ({', '.join(STAGES)}); repeatable; only in a folder "
                            "carrying the cache's marker file CACHEDIR.TAG")
    cache.add_argument("--mark", action="store_true",
                       help="mark the cache folder as transferbench's (write its CACHEDIR.TAG), for a cache made "
                            "before transferbench marked its folder; --clear refuses an unmarked folder")

    tasks = commands.add_parser("tasks", help="list tasks and suites, show one task, or export a split")
    tasks.add_argument("action", nargs="?", choices=["show", "export"],
                       help="show: one task's card and examples; export: a split as JSONL on standard output")
    tasks.add_argument("name", nargs="?")
    tasks.add_argument("--split", choices=["train", "dev", "test"], default="test", help="split to export")
    tasks.add_argument("--suite", default="default", help="suite whose split sizes and seed apply (default: %(default)s)")

    reference = commands.add_parser("reference", parents=[common],
                                    help="build or verify a reference ground truth, or carry a build in shards")
    reference.add_argument("action", choices=["build", "verify", "show", "shards"])
    reference.add_argument("shard_action", nargs="?", choices=list(SHARD_ACTIONS), metavar="{status,export,import}",
                           help="shards: status = per artifact, entries done across the cache and the shards, and "
                                "where each shard ran (default); export = the cache's finished entries of this build "
                                "into a new shard (e.g. while a build runs in another shell); import = the shards' "
                                "entries into the cache")
    reference.add_argument("--root", type=Path, default=None,
                           help="folder of bundles and their index.json (default: the shipped reference/ folder)")
    reference.add_argument("--shards", type=Path, default=None, metavar="DIR",
                           help="build, shards: folder of the build's shards, imported before it plans and written "
                                "with its finished entries when it ends or is interrupted (default: "
                                "<root>/shards/<suite>__<backbone>/, docs/protocol.md 'Building across sessions')")
    reference.add_argument("--no-shards", action="store_true", help="build: neither import nor export shards")
    reference.add_argument("--protocol", type=int, choices=sorted(PROTOCOLS), default=BUILD_PROTOCOL,
                           help="build: the version of the measurement protocol to measure and record: its transfer "
                                "kinds and admission rule (docs/protocol.md; default: %(default)s)")
    reference.add_argument("--cells", type=int, default=5,
                           help="verify: stored predictions to re-compute from the shipped prompts, cycling through "
                                "zero-shot, init, own, null and probe (default: %(default)s, one of each)")
    reference.add_argument("--seed", type=int, default=0, help="verify: which cells are drawn (default: %(default)s)")
    _add_progress_option(reference)
    if neurons:
        inspect_neurons.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    other_command = bool(argv) and argv[0] in {"run", "leaderboard", "indicators", "cache", "tasks", "reference"}
    args = build_parser(neurons=not other_command).parse_args(argv)
    # Wide tables stay readable when output goes to a file or pipe (rich defaults to 80 columns).
    console = Console(markup=False) if sys.stdout.isatty() else Console(markup=False, width=200)
    with _terminate_as_interrupt():
        return _dispatch(args, console)


@contextlib.contextmanager
def _terminate_as_interrupt():
    """In the block, SIGTERM (a job scheduler's or `kill`'s stop) raises `Terminated` in the main
    thread: the run stops as on Ctrl-C, with its one line, and exits with 143. The previous handler
    is restored afterwards (tests call `main` in-process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _dispatch(args, console: Console) -> int:
    try:
        if args.command == "run":
            _print_first_line(args, console)
        if args.command in ("run", "reference"):
            _apply_run_config(args)
        return {"run": cmd_run, "leaderboard": cmd_leaderboard, "indicators": cmd_indicators,
                "tasks": cmd_tasks, "cache": cmd_cache, "reference": cmd_reference,
                "neurons": inspect_neurons.run}[args.command](args, console)
    except TransferbenchError as exc:
        error_line = Text.assemble(("error:", "bold red"), f" {exc}")
        Console(stderr=True, markup=False).print(error_line, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt as exc:
        Console(stderr=True).print("interrupted; finished artifacts are cached and will be reused")
        return 128 + signal.SIGTERM if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stderr.close()
        return 0


def _results_dir(args) -> Path:
    """Your results folder, for the `leaderboard` command (`run` reads it from its `RunConfig`)."""
    return output_folders(False, args.results_dir, DEFAULT_SUBMISSIONS, DEFAULT_LEADERBOARD).results.parent


def _print_first_line(args, console: Console) -> None:
    """`run`'s first line, before anything slow (validating the settings loads the suite; torch and
    the plugins load later): what runs and where its results go, from the flags and the --config
    file as given (on standard output: standard error is kept for progress and an error's one line)."""
    settings = {name: field.get_default(call_default_factory=True) for name, field in RunConfig.model_fields.items()}
    config = getattr(args, "config", None)
    if config is not None:
        with contextlib.suppress(TransferbenchError):  # a bad file is reported by the validation right after
            settings.update(read_yaml(Path(config), str(config)))
    settings.update({name: value for name, value in vars(args).items() if name in settings})
    try:
        submissions, _, local = output_folders(bool(settings["submit"]), settings["results_dir"],
                                               settings["submissions_dir"], settings["leaderboard_dir"])
    except (TypeError, ValueError):  # e.g. `submissions_dir: [1]`: the validation right after names it
        return
    asked = settings.get("indicators") or []
    asked = list(dict.fromkeys(str(name) for name in (asked if isinstance(asked, list) else [asked])))
    console.print(f"transferbench run: indicator{'s' if len(asked) != 1 else ''} {', '.join(asked)} on suite "
                  f"{settings['suite']}, backbone {settings['backbone']}; results -> {submissions}"
                  + (" (yours; --submit for the project's)" if local else ""), highlight=False, soft_wrap=True)


def cmd_run(args, console: Console) -> int:
    """`transferbench.run` on the parsed `RunConfig`, then what it did: the targets of the
    reference, the files written, and the board (rebuilt in the board folder)."""
    import transferbench
    from transferbench.evaluation.results import check_output_folder

    config: RunConfig = args.run_config
    outputs = config.outputs()
    # the board is written after the compute: its folder is checked first (the results folder by `run`)
    check_output_folder("--results-dir" if outputs.local else "--leaderboard-dir", outputs.board)
    results = transferbench.run(config, console=console, progress=args.progress)
    _print_task_report(results.reference, console)
    for path, what in results.written:
        console.print(f"{what} {path}", markup=False, highlight=False)
    suite = results.results[0].suite if results.results else config.suite
    _rebuild_and_print(args, console, outputs.board, local_dir=outputs.results if outputs.local else None,
                       only=(suite, config.backbone), require_official=not outputs.local, verify=not outputs.local)
    console.print(f"done in {results.wall_seconds:.0f} s (scored against reference {results.reference.hash[:12]})")
    return 0


def cmd_reference(args, console: Console) -> int:
    from transferbench.api import benchmark_for, build_estimate, compute_line, executor_for
    from transferbench.manifest import build_manifest
    from transferbench.reference import bundle as ref
    from transferbench.reference import shards, verify

    if args.shard_action is not None and args.action != "shards":
        raise TransferbenchError(f"`reference {args.action}` takes no {args.shard_action!r}; did you mean "
                                 f"`transferbench reference shards {args.shard_action}`?")
    for option, given, actions in (("--no-shards", args.no_shards, ("build",)),
                                   ("--shards", args.shards is not None, ("build", "shards"))):
        if given and args.action not in actions:
            raise TransferbenchError(f"{option} is no option of `reference {args.action}`; it goes with "
                                     f"`reference build`{' and `reference shards`' if 'shards' in actions else ''}")
    if args.action in ("build", "shards"):
        executor = executor_for(args.run_config)
        started = time.perf_counter()
        bench = benchmark_for(args.suite, args.backbone, executor=executor, console=Console(stderr=True, markup=False),
                              use_shipped=False, device=args.device, prompts_per_pass=args.prompts_per_pass,
                              train_attention=args.train_attention, eval_kernel=args.eval_kernel,
                              precision=args.precision)
        folder = None if args.no_shards else (args.shards or shards.default_folder(
            args.root or ref.shipped_root(), bench.suite.name, args.backbone))
    if args.action == "shards":
        return _reference_shards(args.shard_action or "status", bench, folder, ref.protocol_artifacts(args.protocol), console)
    if args.action == "build":
        console.print(compute_line(bench))
        console.print(f"building the reference of {bench.suite.name} on {args.backbone} with protocol {args.protocol} "
                      f"(transfer kinds {', '.join(PROTOCOLS[args.protocol].kinds)}): "
                      f"{build_estimate(bench, protocol_version=args.protocol)}")
        names = ref.protocol_artifacts(args.protocol)
        with shards.sharded_build(bench, folder, names, console), executor, bench.progress(args.progress):
            built = ref.collect(bench, protocol_version=args.protocol)
        import torch

        from transferbench.model.precision import cpu_model

        built.info["build"].update(build_manifest({"executor": repr(executor)}, {}, {
            "wall_seconds": round(time.perf_counter() - started, 1), "device": str(bench.device),
            "prompts_per_pass": bench.prompts_per_pass, "train_attention": bench.train_attention,
            "eval_kernel": bench.eval_kernel, "unit_threads": bench.context.threads,
            "precision": bench.precision.record(), "cpu": cpu_model(),
            "cpu_count": __import__("os").cpu_count(), "torch_threads": torch.get_num_threads(),
            **({"shards": shards.provenance(bench, folder, names)} if folder is not None else {})}))
        root = args.root or ref.shipped_root()
        digest = ref.save(built, root / ref.bundle_name(bench.suite.name, args.backbone), pin=root / "index.json")
        console.print(f"wrote {root / ref.bundle_name(bench.suite.name, args.backbone)} (sha256 {digest})")
        _print_task_report(built, console)
        return 0
    from transferbench.tasks import load_suite

    suite_name = load_suite(args.suite).name
    shipped = ref.load_shipped(suite_name, args.backbone, args.root)  # checks every hash
    if shipped is None:
        raise TransferbenchError(f"no shipped reference for suite {args.suite} on {args.backbone}; build one with "
                                 f"`transferbench reference build --suite {args.suite} --backbone {args.backbone}`")
    console.print(f"{shipped.root}: every file matches MANIFEST.json, pinned hash {shipped.hash}")
    if args.action == "show":
        _print_task_report(shipped, console)
        return 0
    problem = verify.recompute_problem(shipped)
    if problem:
        raise TransferbenchError(problem)
    console.print("tasks.json and transfer.json match what the stored predictions give")
    # re-run cells train (initialisation transfer) and evaluate with the kernels the reference was
    # built with, and with its threads per unit unless told otherwise: CPU numerics depend on them
    build = shipped.info["build"]
    built_threads = build.get("unit_threads", build.get("torch_threads"))  # older builds: the main process's
    config: RunConfig = args.run_config
    if config.unit_threads is None and built_threads:
        config = config.model_copy(update={"unit_threads": int(built_threads)})
        console.print(f"re-running cells with {config.unit_threads} thread(s) per unit, as the build did "
                      "(--unit-threads to choose)")
    executor = executor_for(config)
    bench = benchmark_for(args.suite, args.backbone, executor=executor, console=Console(stderr=True, markup=False),
                          device=args.device, train_attention=build.get("train_attention", "sdpa"),
                          eval_kernel=build.get("eval_kernel", "autocast"), precision=args.precision)
    problem = verify.setting_problem(shipped, bench)
    if problem:
        raise TransferbenchError(f"{shipped.root}: {problem}")
    console.print("suite, backbone, seeds, protocol settings, prompt config, every task's data hash and test "
                  "labels match the bundle")
    built_at = verify.build_precision(shipped.info)
    same = bench.precision.name == built_at
    console.print(f"re-running cells in {bench.precision.phrase()}; the reference was built in {built_at} "
                  f"({'the same precision' if same else 'another precision'}); a cell passes with "
                  + "; ".join(f"{kind}: {verify.cell_tolerance(kind).phrase()}" for kind in verify.RERUN_KINDS)
                  + " (docs/protocol.md, 'Verifying')", highlight=False, soft_wrap=True)
    if args.cells > 0:
        with executor:
            checks = verify.rerun_cells(shipped, bench, args.cells, args.seed)
        table = Table(title=f"{len(checks)} stored predictions re-computed from the shipped prompts")
        for column in ("kind", "source", "target", "seed", "agreement", "stored m", "recomputed m"):
            table.add_column(column)
        for c in checks:
            table.add_row(c.kind, c.source, c.target, "-" if c.seed is None else str(c.seed), f"{c.agreement:.3f}",
                          f"{c.stored:.4f}",
                          f"{c.recomputed:.4f}")
        console.print(table)
        bad = [c for c in checks if not c.ok]
        if bad:
            c = bad[0]
            raise TransferbenchError(
                f"{shipped.root / 'predictions.safetensors'}: {c.key} ({c.kind}) "
                f"re-computes in {bench.precision.name} to predictions that agree on {c.agreement:.1%} of test examples "
                f"with balanced accuracy {c.recomputed:.4f} against the stored {c.stored:.4f} (needed: "
                f"{c.tolerance.phrase()})")
    console.print(f"reference {shipped.root.name} verified")
    return 0


def _reference_shards(action: str, bench, folder: Path, names: list[str], console: Console) -> int:
    """`reference shards status|export|import`: the build of `bench`'s settings, read from the cache
    and the shards of `folder` (`transferbench.reference.shards`); nothing is computed."""
    from transferbench.reference import shards

    now = shards.build_setting(bench)
    if action == "export":
        shard = shards.export_shard(bench, folder, names)
        console.print(f"exported {len(shard.entries)} finished entries to shard {shard.folder}" if shard is not None else
                      f"nothing to export: every finished entry of this build in {bench.store.root} is in a shard of "
                      f"{folder} already", highlight=False, soft_wrap=True)
        return 0
    if action == "import":
        uses = shards.import_shards(bench, folder, names)
        for use in uses:
            console.print(use.line(now), highlight=False, soft_wrap=True)
        if not uses:
            console.print(f"no shards in {folder}", highlight=False, soft_wrap=True)
        return 0
    rows, uses = shards.status(bench, folder, names)
    table = Table(title=f"reference build of {bench.suite.name} on {bench.backbone_name} in {bench.precision.name} "
                        f"on {bench.device.type}: entries done in the cache ({bench.store.root}) and the shards ({folder})")
    for column in ("artifact", "entries", "in the cache", "in shards", "done"):
        table.add_column(column, justify="left" if column == "artifact" else "right")
    for row in rows:
        table.add_row(row.artifact, str(row.total), str(row.in_store), str(row.in_shards), f"{row.done}/{row.total}")
    console.print(table)
    for use in uses:
        record = use.shard.record
        made = (f"after {record['wall_seconds']} s of building" if record.get("wall_seconds") is not None
                else "by `reference shards export`")
        console.print(use.line(now) + f"; made on {record['machine'].get('host')} at {record.get('created_utc')} {made}",
                      highlight=False, soft_wrap=True)
    done, total = sum(row.done for row in rows), sum(row.total for row in rows)
    console.print(f"{done} of {total} entries done" + (
        "; `transferbench reference build` with the same settings continues from them" if done < total else
        "; `transferbench reference build` with the same settings computes nothing and writes the bundle"),
        highlight=False, soft_wrap=True)
    return 0


def _print_task_report(reference, console: Console) -> None:
    from transferbench.reference.protocol import ADMISSION_ALPHA, margin_rule as uses_margin, near_admission_threshold

    record = reference.info.get("protocol", {})
    alpha = record.get("admission_alpha", ADMISSION_ALPHA)
    margin_rule = uses_margin(record)
    table = Table(title="Targets of the reference: own prompt vs null prompt, chance and linear probe "
                        "(balanced accuracy on test, mean over seeds)")
    evidence = (("advantage", f"{1 - alpha:.0%} lower bound") if margin_rule else ("p > majority", "p > null"))
    for column in ("task", "family", "classes", "own prompt", "null", "chance", "probe", "own/probe",
                   *evidence, "admitted"):
        table.add_column(column)
    near = []
    for name, row in reference.tasks.items():
        probe = row["probe_balanced_accuracy"]
        if margin_rule:
            cells = [f"{row['advantage']:.3f}", f"{row['advantage_lcb']:.3f}"]
        else:
            p_values = [row["p_vs_majority"], row["p_vs_null"]]
            marks = ["!" if near_admission_threshold(p, alpha) else "" for p in p_values]
            if any(marks):
                near.append(name)
            cells = [f"{p:.4f}{mark}" for p, mark in zip(p_values, marks)]
        table.add_row(name, row["family"], str(row["classes"]), f"{row['own_balanced_accuracy']:.3f}",
                      f"{row['null_balanced_accuracy']:.3f}", f"{row['chance_balanced_accuracy']:.3f}",
                      "-" if probe is None else f"{probe:.3f}",
                      "-" if row["own_over_probe"] is None else f"{row['own_over_probe']:.2f}",
                      *cells, "yes" if row["admitted"] else f"no: {row['excluded_because']}")
    console.print(table)
    if margin_rule:
        console.print(f"admitted: the own prompt's advantage over the better of the majority class and the null "
                      f"prompt has a one-sided {1 - alpha:.0%} lower bound of at least {record['admission_margin']:g} "
                      "balanced-accuracy points (docs/protocol.md); benchmarks/admission_stability.py re-runs the "
                      "rule under other bootstrap RNG seeds", highlight=False, soft_wrap=True)
        return
    console.print(f"admitted: own prompt beats the majority class and the null prompt, each one-sided bootstrap "
                  f"p < {alpha:g} (docs/protocol.md)" + (
                      f"; near the threshold ({alpha / 2:g} <= p < {2 * alpha:g}, marked !): {', '.join(near)}: "
                      "another draw of the same protocol (other kernels or device) can admit or exclude them"
                      if near else ""), highlight=False, soft_wrap=True)


def _board_results(args, local_dir: Path | None, require_official: bool = True) -> tuple[list, list]:
    """The project's results (from --submissions-dir, which must be a folder when
    `require_official`, else is read only when it is one) plus, from `local_dir`, the user's own,
    marked local; and the files left out of either."""
    from transferbench.evaluation.results import load_results

    results, problems = [], []
    official = args.submissions_dir if require_official or args.submissions_dir.is_dir() else None
    for folder, local in ((official, False), (local_dir, True)):
        if folder is not None and (not local or folder.is_dir()):
            found, skipped = load_results(folder, local=local)
            results += found
            problems += skipped
    return results, problems


def _verify(args, results: list, local_dir: Path | None = None) -> int:
    """Re-score the official rows of `results` from the verification packs and mark them
    (`transferbench.leaderboard.verify`), saying so on standard error; returns how many were
    re-scored and did not reproduce."""
    from transferbench.leaderboard.verify import pack_root, verify_results

    root = getattr(args, "pack_dir", None) or pack_root(args.submissions_dir)
    status = Console(stderr=True, markup=False, soft_wrap=True)
    hidden = [folder for folder in (args.submissions_dir, args.leaderboard_dir, root, local_dir) if folder is not None]
    found = verify_results(results, root, hidden=hidden,
                           progress=lambda line: status.print(line + " ...", highlight=False))
    failed = sum(v.rescored and not v.verified for v in found.values())
    if getattr(args, "verify", False) or any(v.rescored for v in found.values()):  # silent where nothing could be
        status.print(f"verified {sum(v.verified for v in found.values())} of {len(found)} official result files "
                     f"from {root}" + (f"; {failed} re-scored and did not reproduce (see the notes)" if failed else ""),
                     highlight=False)
    return failed


def _rebuild_and_print(args, console: Console, board_dir: Path | None, local_dir: Path | None = None,
                       only: tuple[str, str] | None = None, require_official: bool = True,
                       verify: bool = False) -> int:
    """Print the board of the project's results plus the user's (`local_dir`); write it into
    `board_dir` when given (only the files whose content changes). `verify`: re-score the official
    rows first (`_verify`); returns how many did not reproduce."""
    from transferbench.leaderboard import render_rich, write_leaderboard
    from transferbench.leaderboard.pooled import pooled_tables
    from transferbench.leaderboard.tables import grouped_tables, table_settings

    results, problems = _board_results(args, local_dir, require_official)
    failed = _verify(args, results, local_dir) if verify else 0
    if board_dir is not None:
        written = write_leaderboard(results, board_dir, problems)
        console.print(f"leaderboard {board_dir}: {len(written.changed)} of {len(written)} files changed"
                      + (f", {len(written.removed)} stale plots removed" if written.removed else ""),
                      markup=False, highlight=False)
    settings = table_settings(results)
    tables, pooled = grouped_tables(settings), pooled_tables(settings)
    if only is not None:  # a run's own setting, and the pooled tables its backbone is part of
        tables = {key: table for key, table in tables.items() if (key.suite, key.backbone) == only}
        pooled = {key: table for key, table in pooled.items() if key.suite == only[0]
                  and only[1] in (b["backbone"] for b in table.attrs.get("backbones", []))}
    render_rich(tables, console, columns=args.columns, pooled=pooled)
    for path, reason in problems:
        console.print(f"skipped {path}: {reason}", style="yellow", markup=False)
    return failed


def cmd_leaderboard(args, console: Console) -> int:
    from transferbench.leaderboard import (
        leaderboard_csv, leaderboard_json, open_in_browser, render_html, render_markdown,
    )
    from transferbench.leaderboard.pooled import pooled_tables
    from transferbench.leaderboard.tables import grouped_tables, table_settings
    from transferbench.evaluation.results import check_output_folder

    local = _results_dir(args) / "submissions"
    if args.write:
        check_output_folder("--leaderboard-dir", args.leaderboard_dir)
    # the project's board is written with its rows verified: the published board carries the marks
    verify = args.verify or args.write
    if args.format == "rich":
        if args.write:  # the project's board holds the project's results only
            failed = _rebuild_and_print(args, console, args.leaderboard_dir, verify=verify)
        else:
            failed = _rebuild_and_print(args, console, None, local_dir=local, verify=verify)
        if args.open:
            index = args.leaderboard_dir / "index.html"
            if not index.is_file():
                raise TransferbenchError(f"{index} does not exist yet; add --write to generate it")
            if not open_in_browser(index.resolve()):
                console.print(f"no browser found; open {index} yourself", markup=False)
        return 1 if failed and args.verify else 0
    results, problems = _board_results(args, None if args.write else local)
    failed = _verify(args, results, None if args.write else local) if verify else 0
    if args.write:
        from transferbench.leaderboard import write_leaderboard

        written = write_leaderboard(results, args.leaderboard_dir, problems)
        Console(stderr=True, markup=False).print(
            f"leaderboard {args.leaderboard_dir}: {len(written.changed)} of {len(written)} files changed",
            highlight=False)
    if args.format == "html":
        text = render_html(results, problems)
    elif args.format == "json":
        text = json.dumps(leaderboard_json(results, problems), indent=2, allow_nan=False)
    else:  # the pooled tables too, as the files --write writes
        settings = table_settings(results)
        tables, pooled = grouped_tables(settings), pooled_tables(settings)
        text = (leaderboard_csv(tables, pooled) if args.format == "csv"
                else render_markdown(tables, problems, pooled=pooled))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 1 if failed and args.verify else 0


def cmd_indicators(args, console: Console) -> int:
    from transferbench.scoring.indicator import INDICATORS, KINDS, all_indicator_names, measured_costs

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
    if args.mark:
        from transferbench.store import CACHE_MARKER, mark_cache_root

        if not store.root.is_dir():
            raise TransferbenchError(f"no cache folder {store.root} to mark; it is created, marked, on first use")
        mark_cache_root(store.root)
        console.print(f"marked {store.root} as transferbench's cache ({CACHE_MARKER})", markup=False)
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

    from transferbench.tasks import load_suite, load_task_data

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


def _export_split(name: str, split: str, suite_name: str) -> None:
    """Write one split of a task, as the suite draws it, to standard output as JSON lines."""
    from transferbench.tasks import load_suite, load_task, load_task_data

    suite = load_suite(suite_name)
    spec = load_task(name)
    if spec.name not in [load_task(t).name for t in suite.tasks]:
        raise TransferbenchError(f"task {spec.name} is not in suite {suite.name}; pass --suite with a suite that lists it")
    data = getattr(load_task_data(spec, suite), split)
    for row in data:
        record = {"text": row["text"], **({"text_pair": row["text_pair"]} if spec.is_pair else {}),
                  "label": spec.label_names[row["label"]]}
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")


def cmd_tasks(args, console: Console) -> int:
    from transferbench.tasks import list_suites, list_tasks, load_task

    if args.action == "show":
        if not args.name:
            raise TransferbenchError("usage: transferbench tasks show NAME")
        _show_task(load_task(args.name), console)
        return 0
    if args.action == "export":
        if not args.name:
            raise TransferbenchError("usage: transferbench tasks export NAME --split train|dev|test [--suite S]")
        _export_split(args.name, args.split, args.suite)
        return 0
    table = Table(title="Tasks")
    for column in ("name", "family", "classes", "labels", "source"):
        table.add_column(column)
    for spec in list_tasks():
        table.add_row(spec.name, spec.family, str(spec.num_classes), ", ".join(spec.label_names), spec.source.type)
    console.print(table)
    suites = Table(title="Suites")
    for column in ("name", "tasks", "train/dev/test", "seeds", "split seed"):
        suites.add_column(column)
    for suite in list_suites():
        sizes = f"{suite.train}/{suite.dev}/{suite.test}"
        # a task with its own sizes (too few examples for the suite's) is listed with them
        smaller = [f"{name}: {s.train}/{s.dev}/{s.test}" for name, s in sorted(suite.task_sizes.items())]
        suites.add_row(suite.name, ", ".join(suite.tasks), "\n".join([sizes + (" except" if smaller else ""), *smaller]),
                       ",".join(str(seed) for seed in suite.seeds), str(suite.split_seed))
    console.print(suites)
    return 0


if __name__ == "__main__":
    sys.exit(main())
