"""The benchmark driver: runs tasks -> prompts -> transfer and artifacts -> indicator scores in order.

For each stage the driver computes the store keys of what the stage needs, loads what the
content-addressed `ArtifactStore` already holds, turns the rest into units of work (pure functions
in `transferbench.units`), runs them through its executor (`transferbench.executors`: in-process or
Ray) and writes each returned artifact to the store as soon as it arrives. Only the driver writes
the store, so a second run, a run of another indicator, or a run on other machines recomputes
nothing that is already there, and a crashed worker never leaves a half-written artifact.

Over 400 lines because `Benchmark` is one object with one job, planning and running every stage
against its store; its job builders share the store, keys and seeds, and split out they would only
pass that state around. What each declared artifact is lives in `transferbench.artifact_specs`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from transferbench import units
from transferbench.artifact_specs import (  # noqa: F401  (re-exported)
    ARTIFACT_SPECS, ArtifactSpec, declare_artifact, isolated_artifacts,
)
from transferbench.backbone import Backbone, resolve_device
from transferbench.errors import TransferbenchError
from transferbench.executors import Executor, LocalExecutor, Unit
from transferbench.indicator import ARTIFACTS, Indicator, TaskView
from transferbench.kernels import resolve_eval_kernel, resolve_train_attention
from transferbench.progress import Reporter, Work
from transferbench.prompt import PROMPT_CODE_VERSION, EncodedSplit, PromptConfig, Verbalizer
from transferbench.precision import resolve_precision
from transferbench.reference import Reference, collect as collect_reference
from transferbench.sandbox import DEFAULT_TIME_LIMIT, score_pairs
from transferbench.store import ArtifactStore
from transferbench.task import SuiteSpec, TaskData, TaskSpec, suite_tasks

# Bump when a change in `transferbench.units` changes what an activation artifact would be.
ARTIFACT_CODE_VERSION = 2  # 2: skill-neuron thresholds from train, balanced accuracy on all of dev
# The skill-neuron artifact's own version (it was ARTIFACT_CODE_VERSION up to 2), so bumping it
# recomputes only skill neurons. 3: the [MASK] position scored with the prompt positions.
SKILL_NEURONS_CODE_VERSION = 3
SAMPLE_COUNT = 32
# Settings that only affect measured transfer, so changing them never retrains source prompts.
TRANSFER_ONLY_SETTINGS = ("init_steps",)
# What `measure_transfer` runs: zero-shot evaluations and initialisation runs of every pair, the
# cells every kind of `transferbench.protocol.TRANSFER_KINDS` is computed from.
MEASURED_CELLS = ("zero_shot", "init_gain")


@dataclass
class _Job:
    """A unit of work and the store entries (stage, key) its result fills."""

    unit: Unit
    keys: list[tuple[str, str]]
    # Splits the unit's result into one artifact per key (most units return exactly one).
    unpack: Callable[[Any], list[dict[str, Any]]] = lambda result: [result]
    # Examples the unit's backbone passes process: its size, for the stage's progress and ETA.
    work: Work = Work()


class Benchmark:
    """One suite on one backbone with fixed seeds; computes (or loads) every artifact it is asked for."""

    def __init__(self, suite: SuiteSpec, backbone: str, seeds: list[int],
                 store: ArtifactStore | None = None, console: Console | None = None,
                 executor: Executor | None = None, reference: Reference | None = None, device: str = "cpu",
                 prompts_per_pass: int = 1, train_attention: str = "auto", eval_kernel: str = "auto",
                 precision: str = "auto"):
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
        # The precision the hardware computes natively unless told (`transferbench.precision`); an
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
        self._memo: dict[tuple, Any] = {}
        self._loaded_artifacts: dict[tuple[str, str], dict[str, Any]] = {}
        self._progress: Reporter | None = None
        # A shipped reference supplies the prompts and the measured transfer: nothing is trained.
        self._reference = reference
        self.trains_prompts = reference is None

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

    # ---- store keys: a hash of everything that produced an artifact (`transferbench.store`) -------
    def backbone_identity(self) -> dict[str, str]:
        # Resolving the identity of a packaged alias needs no model load.
        from transferbench.backbone import resolve_backbone

        if "backbone_identity" not in self._memo:
            self._memo["backbone_identity"] = {"backbone": self.backbone_name,
                                               "revision": resolve_backbone(self.backbone_name)[1]}
        return self._memo["backbone_identity"]

    def task_identity(self, task: str) -> dict[str, Any]:
        spec = self.tasks[task]
        # the label words change what a prompt learns, so they key every downstream artifact
        verbalizers = [spec.verbalizers[label] for label in spec.label_names]
        return {"task": task, "version": spec.version, "data_hash": self.data(task).data_hash,
                "verbalizers": verbalizers}

    def prompt_inputs(self, task: str, seed: int) -> dict[str, Any]:
        config = {k: v for k, v in self.config.to_dict().items() if k not in TRANSFER_ONLY_SETTINGS}
        training = self._shipped_training() if self._shipped_prompt_exists(task, seed) else {}
        return {**self.backbone_identity(), **self.task_identity(task), "config": config,
                "seed": seed, "code": PROMPT_CODE_VERSION, **self._device_key(**training)}

    def _device_key(self, train_attention: str | None = None, prompts_per_pass: int | None = None,
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

    def _shipped_prompt_exists(self, task: str, seed: int) -> bool:
        reference = self._reference
        return reference is not None and reference.root is not None and f"{task}/{seed}" in reference.prompts

    def _shipped_training(self) -> dict[str, Any]:
        """How the shipped reference's prompts were trained (its build record; references built
        before the record existed used sdpa attention, one prompt per pass, dev selection under
        autocast): artifacts computed from them are keyed by that, not by how this benchmark would
        train its own."""
        build = self._reference.info.get("build", {})
        return {"train_attention": build.get("train_attention", "sdpa"),
                "prompts_per_pass": int(build.get("prompts_per_pass", 1)),
                "eval_kernel": build.get("eval_kernel", "autocast")}

    def _groups(self, items: list) -> list[list]:
        """`items` (in a fixed, protocol-given order) cut into groups of `prompts_per_pass`: the
        same groups on every run, so a resumed run trains each prompt with the same neighbours."""
        size = self.prompts_per_pass
        return [items[i : i + size] for i in range(0, len(items), size)]

    def _prompt_key(self, task: str, seed: int) -> str:
        return self.store.key("prompts", self.prompt_inputs(task, seed))

    def null_inputs(self, seed: int) -> dict[str, Any]:
        """What the null prompt (the untrained initial prompt of `seed`) depends on."""
        return {**self.backbone_identity(), "null_prompt": True, "prompt_length": self.config.prompt_length,
                "seed": seed, "code": PROMPT_CODE_VERSION}

    def _zero_shot_key(self, source: str | None, target: str, seed: int) -> str:
        source_inputs = self.prompt_inputs(source, seed) if source else self.null_inputs(seed)
        return self.store.key("transfer", {**self._device_key(), "source": source_inputs,
                                           "target": self.task_identity(target), "kind": "zero_shot"})

    def _init_key(self, source: str | None, target: str, seed: int) -> str:
        return self.store.key("transfer", {"source": self.prompt_inputs(source, seed) if source else None,
                                           "target": self.prompt_inputs(target, seed), "kind": "init",
                                           "steps": self.config.init_steps})

    def _skill_key(self, task: str, seed: int, positions: str = units.DEFAULT_SKILL_POSITIONS) -> str:
        return self.store.key("skill_neurons", {"prompt": self.prompt_inputs(task, seed), "artifact": "skill_neurons",
                                                "positions": positions, "code": SKILL_NEURONS_CODE_VERSION})

    def _mask_key(self, task: str, seed: int, with_inputs: bool) -> str:
        return self.store.key("activations", {"prompt": self.prompt_inputs(task, seed), "artifact": "mask_activations",
                                              "with_inputs": with_inputs, "code": ARTIFACT_CODE_VERSION})

    def _embedding_key(self, task: str) -> str:
        return self.store.key("text_embedding", {**self.backbone_identity(), **self.task_identity(task),
                                                 "artifact": "text_embedding", "max_length": self.config.max_length,
                                                 "bf16": self.config.bf16, "code": ARTIFACT_CODE_VERSION})

    # ---- stage 2: prompts ----------------------------------------------------------------------
    def train_prompts(self, pairs: Iterable[tuple[str, int]]) -> None:
        """Train (or load) the prompt of every (task, seed) in `pairs`, as one batch of units.

        With `prompts_per_pass` > 1 the suite's (task, seed) list is cut into fixed groups and each
        group holding a missing prompt is trained together in one unit (`units.train_prompts_unit`)."""
        missing = [(task, seed) for task, seed in dict.fromkeys(pairs)
                   if self._shipped_prompt(task, seed) is None and not self._has("prompts", self._prompt_key(task, seed))]
        if self.prompts_per_pass == 1:
            jobs = [_Job(Unit(units.train_prompt_unit, (self.context, task, seed)), [("prompts", self._prompt_key(task, seed))],
                         work=self._prompt_work(task)) for task, seed in missing]
        else:
            everything = [(name, seed) for seed in self.seeds for name in self.tasks]
            jobs = [_Job(Unit(units.train_prompts_unit, (self.context, group)),
                         [("prompts", self._prompt_key(task, seed)) for task, seed in group], list,
                         sum((self._prompt_work(task) for task, _ in group), Work()))
                    for group in self._groups(everything) if any(pair in missing for pair in group)]
        self._execute("train prompts", jobs)

    def train_all(self) -> None:
        """Train (or load) every task's prompt for every seed."""
        self.train_prompts((name, seed) for seed in self.seeds for name in self.tasks)

    def source_prompt(self, task: str, seed: int) -> dict[str, Any]:
        """{"prompt", "dev_accuracy", "test_accuracy", "test_predictions", "best_step"} for a task's
        own prompt: from the shipped reference when there is one, else trained (or loaded)."""
        shipped = self._shipped_prompt(task, seed)
        if shipped is not None:
            return shipped
        self.train_prompts([(task, seed)])
        return self._artifact_of("prompts", self._prompt_key(task, seed))

    def _shipped_prompt(self, task: str, seed: int) -> dict[str, Any] | None:
        reference = self._reference
        if not self._shipped_prompt_exists(task, seed):
            return None
        predictions = reference.predictions[f"own/{task}/{seed}"]
        labels = reference.predictions[f"labels/{task}"]
        meta = reference.info["prompts"][f"{task}/{seed}"]
        return {"prompt": torch.from_numpy(reference.prompt(task, seed)), "dev_accuracy": meta["dev_accuracy"],
                "test_accuracy": float(np.mean(predictions == labels)),
                "test_predictions": torch.from_numpy(predictions), "best_step": meta["best_step"]}

    # ---- stage 3: measured transfer ------------------------------------------------------------
    def measure_transfer(self, kinds: Iterable[str] = MEASURED_CELLS) -> None:
        """Measure (or load) every pair of each transfer kind, all kinds in one batch of units.

        Zero-shot: one unit per (target, seed) evaluating the missing source prompts together
        (`predict_many`); each pair is stored as its own artifact, so an interrupted row resumes
        where it stopped. Initialisation: one unit per (source or default init, target, seed).
        """
        kinds = list(dict.fromkeys(kinds))
        for kind in kinds:
            if kind not in MEASURED_CELLS:
                raise TransferbenchError(f"unknown transfer kind {kind!r}; use zero_shot or init_gain")
        self.train_all()
        jobs: list[_Job] = []
        names = list(self.tasks)
        for seed in self.seeds:
            for target in names:
                if "zero_shot" in kinds:
                    jobs += self._zero_shot_jobs(target, seed)
                if "init_gain" in kinds:
                    jobs += self._init_jobs([None, *names], target, seed)
        self._execute("measure transfer", jobs)

    def _zero_shot_jobs(self, target: str, seed: int) -> list[_Job]:
        """One unit evaluating every missing source prompt on `target`, and the null prompt (None)."""
        keys = {s: self._zero_shot_key(s, target, seed) for s in [None, *self.tasks] if s != target}
        missing = [s for s, key in keys.items() if not self._has("transfer", key)]
        if not missing:
            return []
        prompts = {s: self.source_prompt(s, seed)["prompt"] if s else None for s in missing}

        def unpack(row: dict[str | None, dict[str, Any]]) -> list[dict[str, Any]]:
            return [row[s] for s in missing]

        return [_Job(Unit(units.zero_shot_row_unit, (self.context, target, seed, prompts)),
                     [("transfer", keys[s]) for s in missing], unpack, Work(eval=len(missing) * self._size(target, "test")))]

    def _init_jobs(self, sources: list[str | None], target: str, seed: int) -> list[_Job]:
        """One unit per missing (source, target, seed) cell; with `prompts_per_pass` > 1, one unit
        per fixed group of sources holding a missing cell, trained together on `target`."""
        sources = [s for s in sources if s != target]
        keys = {source: self._init_key(source, target, seed) for source in sources}
        missing = [s for s in sources if not self._has("transfer", keys[s])]

        def init(source: str | None) -> torch.Tensor | None:
            return self.source_prompt(source, seed)["prompt"] if source else None

        # each arm: `init_steps` training steps, then one pass over the target's test split
        arm = Work(train=self.config.init_steps * self.config.batch_size, eval=self._size(target, "test"))
        if self.prompts_per_pass == 1:
            return [_Job(Unit(units.init_accuracy_unit, (self.context, init(s), target, seed)), [("transfer", keys[s])],
                         work=arm) for s in missing]
        return [_Job(Unit(units.init_accuracy_many_unit, (self.context, [init(s) for s in group], target, seed)),
                     [("transfer", keys[s]) for s in group], list, arm * len(group))
                for group in self._groups(sources) if any(s in missing for s in group)]

    def measured_keys(self) -> list[tuple[str, str]]:
        """(stage, key) of every stored prompt and measured cell of the reference protocol."""
        keys = [("prompts", self._prompt_key(t, seed)) for seed in self.seeds for t in self.tasks]
        for seed in self.seeds:
            for target in self.tasks:
                for source in [None, *self.tasks]:
                    if source != target:
                        keys += [("transfer", self._zero_shot_key(source, target, seed)),
                                 ("transfer", self._init_key(source, target, seed))]
        return [(stage, key) for stage, key in keys if self.store.path(stage, key).exists()]

    def cell(self, kind: str, source: str | None, target: str, seed: int) -> dict[str, Any]:
        """The stored artifact of one measured cell: {"accuracy", "predictions"} of `source`'s
        prompt (None: the null prompt for zero_shot, the default initialisation for init) on
        `target`'s test split. `kind` is "zero_shot" or "init"."""
        key = self._zero_shot_key(source, target, seed) if kind == "zero_shot" else self._init_key(source, target, seed)
        return self._artifact_of("transfer", key)

    def probe_predictions(self, task: str) -> np.ndarray:
        """Test predictions of the task's linear probe on frozen features (`units.probe_unit`)."""
        key = self.store.key("probe", {**self.backbone_identity(), **self.task_identity(task), "artifact": "probe",
                                       "max_length": self.config.max_length, "bf16": self.config.bf16,
                                       "code": ARTIFACT_CODE_VERSION})
        if not self._has("probe", key):
            work = Work(eval=self._size(task, "train") + self._size(task, "test"))  # features of both splits
            self._execute("linear probes", [_Job(Unit(units.probe_unit, (self.context, task)), [("probe", key)], work=work)])
        return self._artifact_of("probe", key)["predictions"].numpy().astype(np.int64)

    # ---- stage 3: the reference ground truth ------------------------------------------------------
    def reference(self) -> Reference:
        """The measured transfer this benchmark scores against: the reference it was given (shipped,
        hash-checked), else one collected now from the store, measuring whatever is missing."""
        if self._reference is None:
            self._reference = collect_reference(self)
        return self._reference

    def transfer(self, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Measured transfer of `kind` (`transferbench.protocol.TRANSFER_KINDS`): (mean over seeds,
        bootstrap standard error); targets the reference excludes are NaN columns."""
        reference = self.reference()
        return reference.matrix(kind, "mean"), reference.matrix(kind, "se")

    # ---- stage 3: artifacts for indicators -----------------------------------------------------
    def prepare_artifacts(self, names: Iterable[str]) -> None:
        """Compute (or load) the stored artifacts behind `names` for every task and seed, as one
        batch of units (after the prompts they read)."""
        names = set(names)
        unknown = sorted(names - set(ARTIFACTS))
        if unknown:
            raise TransferbenchError(f"unknown artifact {unknown[0]!r}; known: {', '.join(ARTIFACTS)}")
        if names & {"prompts", "skill_scores", "mask_activations", "mask_activations_task", *ARTIFACT_SPECS}:
            self.train_all()
        jobs: list[_Job] = []
        for task in self.tasks:
            for seed in self.seeds:
                for name in sorted(names & set(ARTIFACT_SPECS)):
                    jobs += self._declared_jobs(name, task, seed)
                if "skill_scores" in names:
                    jobs += self._skill_jobs(task, seed)
                for name in ("mask_activations", "mask_activations_task"):
                    if name in names:
                        jobs += self._mask_jobs(task, seed, with_inputs=name.endswith("task"))
            if "text_embedding" in names:
                jobs += self._embedding_jobs(task)
        self._execute("indicator artifacts", jobs)

    def _skill_jobs(self, task: str, seed: int, positions: str = units.DEFAULT_SKILL_POSITIONS) -> list[_Job]:
        key = self._skill_key(task, seed, positions)
        if self._has("skill_neurons", key):
            return []
        prompt = self.source_prompt(task, seed)["prompt"]
        return [_Job(Unit(units.skill_neurons_unit, (self.context, task, seed, prompt, positions)),
                     [("skill_neurons", key)], work=Work(eval=self._size(task, "train") + self._size(task, "dev")))]

    def _mask_jobs(self, task: str, seed: int, with_inputs: bool) -> list[_Job]:
        key = self._mask_key(task, seed, with_inputs)
        if self._has("activations", key):
            return []
        prompt = self.source_prompt(task, seed)["prompt"]
        return [_Job(Unit(units.mask_activations_unit, (self.context, task, seed, prompt, with_inputs)),
                     [("activations", key)], work=Work(eval=self._size(task, "dev") if with_inputs else 1))]

    def _embedding_jobs(self, task: str) -> list[_Job]:
        key = self._embedding_key(task)
        if self._has("text_embedding", key):
            return []
        return [_Job(Unit(units.text_embedding_unit, (self.context, task)), [("text_embedding", key)],
                     work=Work(eval=self._size(task, "train")))]

    def _declared_key(self, name: str, task: str, seed: int, target: str | None = None) -> str:
        """Store key of an `ARTIFACT_SPECS` artifact: of (task, seed), or of (source=task, target, seed)."""
        spec = ARTIFACT_SPECS[name]
        inputs = {"artifact": name, "settings": spec.settings, "code": spec.code}
        if target is None:
            return self.store.key(spec.stage, {"prompt": self.prompt_inputs(task, seed), **inputs})
        return self.store.key(spec.stage, {"source": self.prompt_inputs(task, seed),
                                           "target": self.task_identity(target), **inputs})

    def _declared_jobs(self, name: str, task: str, seed: int) -> list[_Job]:
        """The missing units of an `ARTIFACT_SPECS` artifact for (task, seed); for a pair artifact,
        `task` is the target and one unit covers every missing source."""
        spec = ARTIFACT_SPECS[name]
        if spec.per == "task":
            key = self._declared_key(name, task, seed)
            if self._has(spec.stage, key):
                return []
            prompt = self.source_prompt(task, seed)["prompt"]
            return [_Job(Unit(spec.unit, (self.context, task, seed, prompt)), [(spec.stage, key)],
                         work=Work(eval=spec.examples(self._size(task, "train"))))]
        keys = {s: self._declared_key(name, s, seed, target=task) for s in self.tasks if s != task}
        missing = [s for s, key in keys.items() if not self._has(spec.stage, key)]
        if not missing:
            return []
        prompts = {s: self.source_prompt(s, seed)["prompt"] for s in missing}
        return [_Job(Unit(spec.unit, (self.context, task, seed, prompts)), [(spec.stage, keys[s]) for s in missing],
                     lambda row: [row[s] for s in missing], Work(eval=len(missing) * spec.examples(self._size(task, "train"))))]

    def declared_artifact(self, name: str, task: str) -> Any:
        """An `ARTIFACT_SPECS` artifact as views serve it: per seed, or {source: per seed} for a pair
        artifact read on the target `task`."""
        spec = ARTIFACT_SPECS[name]
        self._execute(name.replace("_", " "), [job for seed in self.seeds for job in self._declared_jobs(name, task, seed)])
        if spec.per == "task":
            return [spec.serve(self._artifact_of(spec.stage, self._declared_key(name, task, seed))) for seed in self.seeds]
        return {s: [spec.serve(self._artifact_of(spec.stage, self._declared_key(name, s, seed, target=task)))
                    for seed in self.seeds] for s in self.tasks if s != task}

    def artifact(self, task: str, name: str) -> Any:
        """The artifact `name` (see `transferbench.indicator.ARTIFACTS`) of `task`."""
        key = (task, name)
        if key not in self._memo:
            self._memo[key] = self._compute_artifact(task, name)
        return self._memo[key]

    def _compute_artifact(self, task: str, name: str) -> Any:
        if name in ARTIFACT_SPECS:
            return self.declared_artifact(name, task)
        if name == "prompts":
            return [self.source_prompt(task, seed)["prompt"].numpy() for seed in self.seeds]
        if name == "skill_scores":
            return np.mean([self.skill_neurons(task, seed)["scores"].numpy() for seed in self.seeds], axis=0)
        if name in ("mask_activations", "mask_activations_task"):
            return [self.mask_activations(task, seed, with_inputs=name.endswith("task")) for seed in self.seeds]
        if name == "text_embedding":
            return self.text_embedding(task)
        if name == "samples":
            train = self.data(task).train
            labels = self.tasks[task].label_names
            n = min(SAMPLE_COUNT, len(train))
            return [(train[i]["text"], train[i]["text_pair"], labels[train[i]["label"]]) for i in range(n)]
        if name == "train_size":
            return self.data(task).source_size
        raise TransferbenchError(f"unknown artifact {name!r}; known: {', '.join(ARTIFACTS)}")

    def skill_neurons(self, task: str, seed: int, positions: str = units.DEFAULT_SKILL_POSITIONS) -> dict[str, torch.Tensor]:
        """Skill-neuron thresholds and scores of a task's own prompt, read at `positions`
        (`units.skill_positions`; the default is the reference code's [MASK] + prompt), see
        `units.skill_neurons_unit`."""
        self._execute("skill neurons", self._skill_jobs(task, seed, positions))
        return self._artifact_of("skill_neurons", self._skill_key(task, seed, positions))

    def skill_position_activations(self, task: str, seed: int, split: str,
                                   positions: str = units.DEFAULT_SKILL_POSITIONS) -> torch.Tensor:
        """FFN activations `[examples, layers, positions, ffn]` at the skill-neuron positions (not stored)."""
        prompt = self.source_prompt(task, seed)["prompt"]
        return units.skill_position_activations(self.context, task, prompt, split, positions)

    def mask_activations(self, task: str, seed: int, with_inputs: bool) -> np.ndarray:
        """FFN activations `[layers, ffn]` at the [MASK] position: of the prompt alone (Su et al.),
        or averaged over the task's dev inputs."""
        self._execute("mask activations", self._mask_jobs(task, seed, with_inputs))
        return self._artifact_of("activations", self._mask_key(task, seed, with_inputs))["activations"].numpy()

    def text_embedding(self, task: str) -> np.ndarray:
        """Mean over training inputs of the frozen backbone's mean-pooled output, without a prompt."""
        self._execute("text embedding", self._embedding_jobs(task))
        return self._artifact_of("text_embedding", self._embedding_key(task))["embedding"].numpy()

    # ---- stage 4: indicator scores -------------------------------------------------------------
    def indicator_scores(self, indicator: Indicator) -> pd.DataFrame:
        """The indicator's score for every ordered pair of distinct tasks (NaN on the diagonal)."""
        declared = frozenset(indicator.requires)
        self.prepare_artifacts(declared)  # every unit up front, through the executor, with progress
        # Sealed views: each holds only its task's declared artifacts, no path back to this object.
        views = {name: TaskView(name, spec.family, spec.num_classes,
                                {artifact: self.artifact(name, artifact) for artifact in sorted(declared)})
                 for name, spec in self.tasks.items()}
        names = list(self.tasks)
        pairs = [(s, t) for s in names for t in names if s != t]
        values = score_pairs(indicator, [(views[s], views[t]) for s, t in pairs], time_limit=DEFAULT_TIME_LIMIT)
        scores = pd.DataFrame(np.nan, index=names, columns=names)
        for (s, t), value in zip(pairs, values, strict=True):
            scores.loc[s, t] = value
        return scores

    # ---- plumbing ------------------------------------------------------------------------------
    def _has(self, stage: str, key: str) -> bool:
        """Whether the store holds a readable artifact (a corrupt file is removed and counts as missing)."""
        if (stage, key) in self._loaded_artifacts:
            return True
        artifact = self.store.load(stage, key)
        if artifact is not None:
            self._loaded_artifacts[stage, key] = artifact
        return artifact is not None

    def _artifact_of(self, stage: str, key: str) -> dict[str, Any]:
        if not self._has(stage, key):
            raise TransferbenchError(f"artifact {stage}/{key} is missing from {self.store.root} after computing it; "
                                     "is another process clearing the cache?")
        return self._loaded_artifacts[stage, key]

    def _execute(self, description: str, jobs: list[_Job]) -> None:
        """Run the jobs' units through the executor; store each result in the driver as it arrives."""
        if not jobs:
            return
        for stage in sorted({stage for job in jobs for stage, _ in job.keys}):
            self.store.check_writable(stage)  # a read-only or full cache fails here, before compute
        advance = self._advance(description, jobs) or (lambda index: None)

        def store_result(index: int, result: Any) -> None:
            job = jobs[index]
            artifacts = job.unpack(result)
            for (stage, key), artifact in zip(job.keys, artifacts, strict=True):
                self.store.save(stage, key, artifact)  # atomic rename: never half-written
                self._loaded_artifacts[stage, key] = artifact
            advance(index)

        self.executor.run([job.unit for job in jobs], description, on_result=store_result)

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

    def _advance(self, description: str, jobs: list[_Job]):
        """The reporter's stage for `jobs`, sized by their work, with the cost of an example measured
        on this machine (`transferbench.calibration`: a few seconds, once per process)."""
        if self._progress is None:
            return None
        from transferbench.calibration import example_cost

        return self._progress.stage(description, len(jobs), [job.work for job in jobs], example_cost(self))

    def _size(self, task: str, split: str) -> int:
        """Examples in a split of `task` (the data is loaded in this process to key its artifacts)."""
        return len(getattr(self.data(task), split))

    def _prompt_work(self, task: str) -> Work:
        """A task's own prompt (`units.train_prompt_unit`): `steps` training batches, a dev pass
        at every multiple of `eval_every` and at the last step, one test pass."""
        config = self.config
        dev_passes = -(-config.steps // config.eval_every)
        return Work(train=config.steps * config.batch_size,
                    eval=dev_passes * self._size(task, "dev") + self._size(task, "test"))
