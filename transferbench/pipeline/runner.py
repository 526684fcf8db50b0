"""The benchmark driver: one suite on one backbone with fixed seeds, and the identities that key
every artifact it computes (backbone, task data, prompt config, device and kernels).

`Benchmark` is a `transferbench.pipeline.planner.Planner`: asked for artifacts by name (`ensure`, `get`,
`view`; declared in `transferbench.pipeline.artifacts`), it loads what the content-addressed
`ArtifactStore` holds, runs the rest as units (pure functions in `transferbench.pipeline.units`) through its
executor (`transferbench.pipeline.executors`: in-process or Ray) and writes each result to the store as it
arrives. Only the driver writes the store, so a second run, a run of another indicator, or a run
on other machines recomputes nothing that is already there, and a crashed worker never leaves a
half-written artifact.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Callable, Iterator

import torch
from rich.console import Console

from transferbench.errors import TransferbenchError
from transferbench.model.backbone import Backbone, resolve_device
from transferbench.model.kernels import resolve_eval_kernel, resolve_train_attention
from transferbench.model.precision import resolve_precision
from transferbench.model.prompt import PROMPT_CODE_VERSION, EncodedSplit, PromptConfig, Verbalizer
from transferbench.pipeline import units
from transferbench.pipeline.artifacts import DEFAULT_SKILL_POSITIONS, TRANSFER_ONLY_SETTINGS, Address, Sizes
from transferbench.pipeline.executors import Executor, LocalExecutor
from transferbench.pipeline.planner import Planner, Supply
from transferbench.progress import Reporter, Work
from transferbench.store import ArtifactStore
from transferbench.tasks import SuiteSpec, TaskData, TaskSpec, suite_tasks


class Benchmark(Planner):
    """One suite on one backbone with fixed seeds; computes (or loads) every artifact it is asked for.

    `supplied`: artifacts provided from outside the store (`planner.Supply`: a shipped reference's
    prompts and measured cells, `transferbench.reference.bundle.BundleArtifacts`); then nothing is trained."""

    def __init__(self, suite: SuiteSpec, backbone: str, seeds: list[int],
                 store: ArtifactStore | None = None, console: Console | None = None,
                 executor: Executor | None = None, supplied: Supply | None = None, device: str = "cpu",
                 prompts_per_pass: int = 1, train_attention: str = "auto", eval_kernel: str = "auto",
                 precision: str = "auto"):
        super().__init__()
        if not seeds:
            raise TransferbenchError("at least one seed is needed (e.g. --seeds 0)")
        self.suite = suite
        self.backbone_name = backbone
        self.seeds = list(seeds)
        self.store = store or ArtifactStore()
        self.console = console or Console(stderr=True)
        self.executor = executor or LocalExecutor()
        where = str(suite.yaml_path) if suite.yaml_path else f"suite {suite.name}"
        config = PromptConfig.from_overrides(dict(suite.training), where=where)
        self.tasks: dict[str, TaskSpec] = {spec.name: spec for spec in suite_tasks(suite)}
        self.device = resolve_device(device)
        # The precision the hardware computes natively unless told (`transferbench.model.precision`); an
        # fp32 run's config has bf16 off, so every prompt and artifact it computes is keyed apart.
        self.precision = resolve_precision(precision, self.device, suite_allows_reduced=config.bf16)
        self.config = replace(config, bf16=self.precision.reduced)
        if isinstance(prompts_per_pass, bool) or not isinstance(prompts_per_pass, int) or prompts_per_pass < 1:
            raise TransferbenchError(f"--prompts-per-pass must be a whole number >= 1, not {prompts_per_pass!r}")
        # Prompts trained together (`prompt.train_prompts`) follow their one-at-a-time trajectories
        # up to floating-point rounding, so the grouping is part of what produced an artifact.
        self.prompts_per_pass = prompts_per_pass
        # `auto` resolved here, once, for this device and precision (`kernels.AUTO_KERNELS`): the kernel
        # that trains this benchmark's prompts keys them, and so does the one that evaluates
        self.train_attention = resolve_train_attention(train_attention, self.device, self.precision.name)
        self.eval_kernel = resolve_eval_kernel(eval_kernel, self.device, self.precision.name)
        self.context = units.UnitContext(suite, backbone, self.config, tuple(self.tasks),
                                         threads=self.executor.threads_per_unit, device=str(self.device),
                                         train_attention=self.train_attention, eval_kernel=self.eval_kernel)
        self._identity: dict[str, str] | None = None
        self._progress: Reporter | None = None
        self.supplied = supplied
        self.trains_prompts = supplied is None

    def use_supplied(self, supplied: Supply) -> None:
        """Read prompts (and what else `supplied` has) from `supplied` from now on, keyed by how it
        trained them (a reference measured by this benchmark, once saved as a bundle)."""
        self.supplied = supplied
        self.forget()

    # ---- stage 1: data (built in this process, shared with units run by the local executor) ------
    def data(self, task: str) -> TaskData:
        return units.loaded(self.context).data(task)

    @property
    def backbone(self) -> Backbone:
        return units.loaded(self.context).backbone

    def encoded(self, task: str, split: str) -> EncodedSplit:
        return units.loaded(self.context).encoded(task, split)

    def verbalizer(self, task: str) -> Verbalizer:
        return units.loaded(self.context).verbalizer(task)

    def sizes(self, task: str) -> Sizes:
        """Examples in the task's splits as loaded (they size a stage's progress and ETA)."""
        data = self.data(task)
        return Sizes(len(data.train), len(data.dev), len(data.test))

    # ---- store keys: a hash of everything that produced an artifact (`transferbench.store`) -------
    def backbone_identity(self) -> dict[str, str]:
        # Resolving the identity of a packaged alias needs no model load.
        from transferbench.model.backbone import backbone_identity

        if self._identity is None:
            self._identity = backbone_identity(self.backbone_name)
        return self._identity

    def task_identity(self, task: str) -> dict[str, Any]:
        spec = self.tasks[task]
        # the label words change what a prompt learns, so they key every downstream artifact
        verbalizers = [spec.verbalizers[label] for label in spec.label_names]
        return {"task": task, "version": spec.version, "data_hash": self.data(task).data_hash,
                "verbalizers": verbalizers}

    def prompt_inputs(self, task: str, seed: int) -> dict[str, Any]:
        """What a task's own prompt of `seed` depends on; a supplied prompt is keyed by how its
        supplier trained it (`Supply.training`), not by how this benchmark would train its own."""
        config = {k: v for k, v in self.config.to_dict().items() if k not in TRANSFER_ONLY_SETTINGS}
        supplied = self.supplied is not None and self.supplied.has("prompts", Address(task, seed))
        return {**self.backbone_identity(), **self.task_identity(task), "config": config,
                "seed": seed, "code": PROMPT_CODE_VERSION, **self.device_key(**(self.supplied.training if supplied else {}))}

    def device_key(self, train_attention: str | None = None, prompts_per_pass: int | None = None,
                   eval_kernel: str | None = None) -> dict[str, Any]:
        """Measured numbers depend on the device's kernels, the precision, the attention kernel of
        training steps, how many prompts train in one pass and the evaluation kernel (this
        benchmark's, unless given); keys of CPU runs in bf16 training one prompt at a time with sdpa
        attention and evaluating under autocast stay as they always were."""
        train_attention = train_attention or self.train_attention
        prompts_per_pass = prompts_per_pass or self.prompts_per_pass
        eval_kernel = eval_kernel or self.eval_kernel
        key: dict[str, Any] = {} if self.device.type == "cpu" else {"device": self.device.type}
        if not self.config.bf16:  # the null prompt's cells are keyed by no config: the precision keys them
            key["precision"] = "fp32"
        if train_attention != "sdpa":
            key["train_attention"] = train_attention
        if prompts_per_pass > 1:
            key["prompts_per_pass"] = prompts_per_pass
        if eval_kernel != "autocast":
            key["eval_kernel"] = eval_kernel
        return key

    def null_inputs(self, seed: int) -> dict[str, Any]:
        """What the null prompt (the untrained initial prompt of `seed`) depends on."""
        return {**self.backbone_identity(), "null_prompt": True, "prompt_length": self.config.prompt_length,
                "seed": seed, "code": PROMPT_CODE_VERSION}

    # ---- shorthands for the artifacts analyses read most -----------------------------------------
    def source_prompt(self, task: str, seed: int) -> dict[str, Any]:
        """`get("prompts", ...)`: {"prompt", "dev_accuracy", "test_accuracy", "test_predictions",
        "best_step"} of a task's own prompt, supplied, or trained (or loaded)."""
        return self.get("prompts", task=task, seed=seed)

    def skill_neurons(self, task: str, seed: int, positions: str = DEFAULT_SKILL_POSITIONS) -> dict[str, torch.Tensor]:
        """`get("skill_neurons", ...)`: thresholds and scores of a task's own prompt read at
        `positions` (`units.skill_positions`), see `units.skill_neurons_unit`."""
        return self.get("skill_neurons", task=task, seed=seed, positions=positions)

    def skill_position_activations(self, task: str, seed: int, split: str,
                                   positions: str = DEFAULT_SKILL_POSITIONS) -> torch.Tensor:
        """FFN activations `[examples, layers, positions, ffn]` at the skill-neuron positions (not stored)."""
        prompt = self.source_prompt(task, seed)["prompt"]
        return units.skill_position_activations(self.context, task, prompt, split, positions)

    # ---- progress ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def progress(self, mode: str = "auto") -> Iterator[Reporter]:
        """Report every long step run inside this block (`transferbench.progress`): rich bars with
        per-batch progress, rate and ETA on a terminal (`auto`, `rich`), plain periodic lines
        otherwise (`plain`); one line per finished stage either way."""
        reporter = Reporter(self.console, mode)
        with reporter.reporting():
            self._progress = reporter
            try:
                yield reporter
            finally:
                self._progress = None

    @property
    def reporter(self) -> Reporter | None:
        """The reporter of the `progress` block running now, if any."""
        return self._progress

    def progress_stage(self, description: str, works: list[Work]) -> Callable[[int], None] | None:
        """The reporter's stage for units of sizes `works`, with the cost of an example measured on
        this machine (`transferbench.pipeline.calibration`: a few seconds, once per process)."""
        if self._progress is None:
            return None
        from transferbench.pipeline.calibration import example_cost

        return self._progress.stage(description, len(works), works, example_cost(self))
