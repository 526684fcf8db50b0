"""`RunConfig`: everything one run depends on, as one validated object.

`transferbench.run(config)` takes it (or its fields as keyword arguments); the command line builds
it from a YAML file (`transferbench run --config run.yaml`), from flags, or both (a flag overrides
the file's value). It is validated before any compute, together with the suite it names (an
unknown suite is an error of the `suite` field), and a bad value is one line naming where it came
from: the file and field, the flag, or the keyword argument. The defaults of every setting (the
kernels and precision included) are the fields' defaults here, and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, NamedTuple, Sequence

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from transferbench.errors import TransferbenchError
from transferbench.seeds import parse_seeds
from transferbench.tasks.schema_errors import one_line, read_yaml

DEFAULT_RESULTS = Path("transferbench-results")
"""A user's own results folder (a run without `submit`), unless $TRANSFERBENCH_RESULTS names another."""


def expand_all(items: Iterable, every: Sequence[str]) -> list:
    """`items` with each "all" replaced by `every` (every registered indicator, or transfer kind),
    each item kept once in first-seen order: names by equality, other objects (an Indicator class
    or instance given to `transferbench.run`) by identity."""
    expanded: list = []
    for item in items:
        for one in every if isinstance(item, str) and item == "all" else [item]:
            if not any(one is seen or (isinstance(one, str) and one == seen) for seen in expanded):
                expanded.append(one)
    return expanded


class Outputs(NamedTuple):
    """Where a run's result files and its board go, and whether that is the user's own folder."""

    results: Path
    board: Path
    local: bool


def output_folders(submit: bool, results_dir: Path | None, submissions_dir: Path, leaderboard_dir: Path) -> Outputs:
    """`submit`: the project's `submissions_dir` and `leaderboard_dir`; else `submissions/` and
    `leaderboard/` of the user's results folder (`results_dir`, else $TRANSFERBENCH_RESULTS, else
    ./transferbench-results)."""
    if submit:
        return Outputs(Path(submissions_dir), Path(leaderboard_dir), False)
    local = Path(results_dir or os.environ.get("TRANSFERBENCH_RESULTS") or DEFAULT_RESULTS)
    return Outputs(local / "submissions", local / "leaderboard", True)


class RunConfig(BaseModel):
    """The settings of one run; field names are the command-line flags without `--`, with `_`
    for `-` (`unit_threads` is `--unit-threads`), and `indicators` is the repeatable `--indicator`.

    `transfer`: "all", one transfer kind or a list of kinds, of the protocol of the reference the
    run scores against (`transfer_kinds`; "all" is every kind of that protocol). Result files go to
    your results folder (`results_dir`), or with `submit` to the project's `submissions_dir` (`outputs`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    indicators: list[str] = Field(default_factory=list)
    suite: str = "default"
    backbone: str = "minilm"
    seeds: list[int] | None = None
    transfer: str | list[str] = "all"
    submit: StrictBool = False
    results_dir: Path | None = None
    submissions_dir: Path = Path("submissions")
    leaderboard_dir: Path = Path("leaderboard")
    device: str = "auto"
    executor: str = "local"
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    gpus_per_task: float = 0
    unit_threads: int | None = None
    prompts_per_pass: int = 1
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # precision.PRECISIONS
    train_attention: Literal["auto", "sdpa", "eager", "eager-compiled"] = "auto"  # kernels.TRAIN_ATTENTION
    eval_kernel: Literal["auto", "autocast", "compiled"] = "auto"  # kernels.EVAL_KERNEL and auto

    @field_validator("suite")
    @classmethod
    def _suite_loads(cls, value: str) -> str:
        from transferbench.tasks import load_suite

        try:
            load_suite(value)
        except TransferbenchError as exc:
            raise ValueError(f"{value!r} does not load: {exc}") from None
        return value

    @field_validator("backbone")
    @classmethod
    def _backbone_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; give a packaged alias (e.g. minilm), a model folder or a Hugging Face id")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds_in_range(cls, value: list[int] | None) -> list[int] | None:
        return value if value is None else parse_seeds(value)

    @field_validator("transfer")
    @classmethod
    def _known_transfer(cls, value: str | list[str]) -> str | list[str]:
        # A kind of any protocol version passes here, before the suite's reference is known;
        # `transferbench.run` then checks the kinds against that reference's protocol.
        from transferbench.reference.protocol import all_transfer_kinds, kinds_by_version

        kinds, listed = [value] if isinstance(value, str) else value, kinds_by_version()
        if not kinds:
            raise ValueError(f"give a non-empty list of transfer kinds of the reference's protocol ({listed}), or all")
        unknown = [kind for kind in kinds if kind != "all" and kind not in all_transfer_kinds()]
        if unknown:
            raise ValueError(f"must be all or a transfer kind of the reference's protocol ({listed}), or a list of "
                             f"them, got {unknown[0]!r}")
        return value

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value: str) -> str:
        from transferbench.pipeline.executors import EXECUTORS
        from transferbench.registry import did_you_mean

        if value not in EXECUTORS:
            raise ValueError(f"{value!r} is not a registered executor{did_you_mean(value, EXECUTORS.names())}")
        return value

    @field_validator("unit_threads", "prompts_per_pass", "ray_num_cpus")
    @classmethod
    def _at_least_one(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @field_validator("gpus_per_task")
    @classmethod
    def _gpus_not_negative(cls, value: float) -> float:
        if not 0 <= value < float("inf"):
            raise ValueError(f"must be a number of GPUs, 0 or more, got {value}")
        return value

    @field_validator("seeds", "ray_num_cpus", "gpus_per_task", "unit_threads", "prompts_per_pass", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        # pydantic reads true as 1: `seeds: [true]` would silently be seed 1
        if isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)):
            raise ValueError(f"takes numbers, not true or false, got {value}")
        return value

    def transfer_kinds(self, every: Sequence[str] | None = None) -> list[str]:
        """The transfer kinds to score against, "all" expanded to `every`: the kinds of the
        reference's protocol, in registration order (default: those of the protocol a reference is
        built with, `protocol.BUILD_PROTOCOL`)."""
        from transferbench.reference.protocol import BUILD_PROTOCOL, PROTOCOLS

        every = PROTOCOLS[BUILD_PROTOCOL].kinds.names() if every is None else list(every)
        return expand_all([self.transfer] if isinstance(self.transfer, str) else self.transfer, every)

    def outputs(self) -> Outputs:
        """Where this run's result files and board go (`output_folders`)."""
        return output_folders(self.submit, self.results_dir, self.submissions_dir, self.leaderboard_dir)

    def output_folders(self) -> list[Path]:
        """The folders this run writes or reads results in, which its sealed scoring process hides
        (docs/indicators.md) wherever they are: the results and board folders it writes (with a
        results folder of your own, all of it), the project's submissions and board, and the
        verification packs beside them."""
        from transferbench.leaderboard.verify import pack_root

        outputs = self.outputs()
        folders = [outputs.results, outputs.board, *([outputs.results.parent] if outputs.local else []),
                   self.submissions_dir, self.leaderboard_dir, pack_root(self.submissions_dir)]
        return list(dict.fromkeys(Path(folder).absolute() for folder in folders))


def flag(field: str) -> str:
    """The command-line flag of a field: `unit_threads` -> `--unit-threads`."""
    return "--indicator" if field == "indicators" else "--" + field.replace("_", "-")


def build_run_config(flags: Mapping[str, Any], file: Path | None = None) -> RunConfig:
    """The run's config: the YAML `file`'s fields (if given), overridden by the `flags` given on
    the command line (`seeds` as the flag's text, read by `parse_seeds`). A bad value is one
    TransferbenchError naming the flag, or the file and field."""
    from_file = read_yaml(file, str(file)) if file is not None else {}
    if isinstance(flags.get("seeds"), str):
        try:
            flags = {**flags, "seeds": parse_seeds(flags["seeds"])}
        except ValueError as exc:
            raise TransferbenchError(f"{flag('seeds')} {exc}") from None
    try:
        return RunConfig.model_validate({**from_file, **flags})
    except ValidationError as exc:
        first = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if field in flags:
            message = first["msg"].removeprefix("Value error, ")
            raise TransferbenchError(f"{flag(field)} {message}") from None
        raise TransferbenchError(one_line(str(file), exc, RunConfig)) from None
