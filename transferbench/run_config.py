"""`RunConfig`: everything one `transferbench run` depends on, as one validated object.

It comes from a YAML file (`transferbench run --config run.yaml`), from command-line flags, or
both (a flag overrides the file's value). It is validated before any compute, together with the
suite it names (an unknown suite is an error of the `suite` field), and a bad value is one line
naming where it came from: the file and field, or the flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from transferbench.errors import TransferbenchError
from transferbench.schema_errors import one_line, read_yaml

MAX_SEED = 2**32 - 1  # numpy and torch seeds must fit; larger values overflow deep inside training


class RunConfig(BaseModel):
    """The settings of one run; field names are the command-line flags without `--`, with `_`
    for `-` (`unit_threads` is `--unit-threads`), and `indicators` is the repeatable `--indicator`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    indicators: list[str] = Field(default_factory=list)
    suite: str = "default"
    backbone: str = "minilm"
    seeds: list[int] | None = None
    transfer: str = "all"
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
        from transferbench.task import load_suite

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
        if value is None:
            return value
        if not value or any(not 0 <= seed <= MAX_SEED for seed in value):
            raise ValueError(f"takes integers from 0 to {MAX_SEED}, got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"lists a seed twice ({value}); each seed is one run")
        return value

    @field_validator("transfer")
    @classmethod
    def _known_transfer(cls, value: str) -> str:
        from transferbench.protocol import TRANSFER_KINDS

        if value != "all" and value not in TRANSFER_KINDS:
            raise ValueError(f"must be all or one of {', '.join(TRANSFER_KINDS)}, got {value!r}")
        return value

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value: str) -> str:
        from transferbench.executors import EXECUTORS
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

    def transfer_kinds(self) -> list[str]:
        from transferbench.protocol import TRANSFER_KINDS

        return list(TRANSFER_KINDS) if self.transfer == "all" else [self.transfer]


def flag(field: str) -> str:
    """The command-line flag of a field: `unit_threads` -> `--unit-threads`."""
    return "--indicator" if field == "indicators" else "--" + field.replace("_", "-")


def build_run_config(flags: Mapping[str, Any], file: Path | None = None) -> RunConfig:
    """The run's config: the YAML `file`'s fields (if given), overridden by the `flags` given on
    the command line. A bad value is one TransferbenchError naming the flag, or the file and field."""
    from_file = read_yaml(file, str(file)) if file is not None else {}
    try:
        return RunConfig.model_validate({**from_file, **flags})
    except ValidationError as exc:
        first = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if field in flags:
            message = first["msg"].removeprefix("Value error, ")
            raise TransferbenchError(f"{flag(field)} {message}") from None
        raise TransferbenchError(one_line(str(file), exc, RunConfig)) from None
