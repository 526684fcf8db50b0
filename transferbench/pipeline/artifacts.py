"""Every artifact of the pipeline as one declaration (`ArtifactSpec`) in one registry, `ARTIFACTS`:
own prompts, measured transfer cells, linear probes, skill neurons, activations, embeddings, pair
outputs, probe rankings, and the served-only task facts.

`transferbench.pipeline.planner.Planner` plans, keys, computes, stores and serves every artifact from these
declarations alone; `transferbench.pipeline.units` holds the pure functions that compute them (named here
as "module:attr" so this module imports no torch: the sealed scoring process reads
`indicator.ARTIFACTS` and `PairOutputs` from it). Adding an artifact is one `declare_artifact` call
and one unit (docs/architecture.md, "How to add an artifact").
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from transferbench.errors import TransferbenchError
from transferbench.progress import Work
from transferbench.registry import Registry, import_target, isolated
from transferbench.store import STAGES

# What an artifact is one of: `task` (one per task), `task_seed` (per task and seed: what a task's
# own prompt of that seed gives), `pair_seed` (per source, target and seed; source None is the null
# prompt, or the default initialisation, where `null_source` says the artifact has it).
PER = ("task", "task_seed", "pair_seed")
# How the missing entries of an artifact become units: `each` one unit per entry; `row` one unit
# per (target, seed) for all its missing sources; `groups` fixed groups of `prompts_per_pass`
# entries trained together (of all (task, seed) for `task_seed`, of a target's sources for pairs).
BATCHING = {"task": ("each",), "task_seed": ("each", "groups"), "pair_seed": ("row", "groups")}

# Settings of the units' artifacts (part of their store keys through `settings`). The first this
# many train examples of a target feed the pair-level estimators (LogME, LEEP, NCE, H-score): a cap
# that keeps 132 pairs x 3 seeds of the default suite affordable on a CPU.
PAIR_EXAMPLES = 256
# The first this many train examples, and the probe's penalties, of the NeuroX-style probe ranking.
PROBE_EXAMPLES = 512
PROBE_L1 = 1e-3
PROBE_L2 = 1e-3
# saga epochs of that probe. To tolerance 1e-6 it needs thousands of epochs on 512 x 9216
# activations (over 5 minutes per task and seed on a shared 2-core CPU; 50 epochs took 64 s there),
# so the ranking is that of a probe stopped after this many epochs: on synthetic data with 50
# informative neurons among 9216, 50 epochs already ranked all 50 first.
PROBE_MAX_ITER = 100
# Which positions of the template `[CLS] p_1 .. p_n [MASK] text` the skill-neuron scores read
# (`units.skill_positions`); "mask+prompt" is the reference code's choice.
DEFAULT_SKILL_POSITIONS = "mask+prompt"
# Where the neuron artifacts read activations: "mask" the [MASK] position (the papers'), or
# "verbalizer" where the backbone's verbalizer reads its output (`prompt.read_out`: [MASK] with an
# MLM head, the mean over attended positions without one). The `*_readout` artifacts read the
# latter, skill neurons at the prompt positions plus the read-out (`units.skill_positions`).
READOUTS = ("mask", "verbalizer")
READOUT_SKILL_POSITIONS = "readout+prompt"
# `code` of the skill-neuron and mask-activation units, shared by their read-out variants
SKILL_NEURONS_CODE = 3
MASK_ACTIVATIONS_CODE = 2
SAMPLE_COUNT = 32
# Settings that only affect measured transfer, so changing them never retrains source prompts.
TRANSFER_ONLY_SETTINGS = ("init_steps",)


class Address(NamedTuple):
    """One entry of an artifact: `task` (the target of a pair artifact), `seed` (None for a `task`
    artifact) and, for a pair artifact, `source` (None: the null prompt / default initialisation)."""

    task: str
    seed: int | None = None
    source: str | None = None


class Sizes(NamedTuple):
    """Examples in a task's splits, what cost models read."""

    train: int
    dev: int
    test: int


class PairOutputs(NamedTuple):
    """One (source, target, seed) cell of the `pair_outputs` artifact: the frozen backbone run on
    the target's first `PAIR_EXAMPLES` train examples with the *source* task's prompt.

    `features` `float32 [n, hidden]`: mean-pooled last hidden states (the prompt, [MASK] and text
    positions, as the verbalizer pools them); `source_probs` `float32 [n, source_classes]`: softmax
    of the source task's verbalizer logits (its own label words); `target_labels` `int64 [n]`.
    """

    features: np.ndarray
    source_probs: np.ndarray
    target_labels: np.ndarray


def _same(entry: Any) -> Any:
    return entry


@dataclass(frozen=True)
class ArtifactSpec:
    """The one declaration of an artifact; from it alone the planner plans, keys, runs, stores and
    serves it.

    - `per` (`PER`) what it is one of; `unit` the pure function computing it ("module:attr" or a
      callable; None: served only, from `view`), called by `batching` (`BATCHING`):
      `task`/each: `unit(ctx, task, *options)`; `task_seed`/each: `unit(ctx, task, seed, *needed,
      *options)` with the value of each artifact in `needs` for (task, seed); `task_seed`/groups:
      `unit(ctx, [(task, seed), ...]) -> [entry, ...]`; `pair_seed`/row: `unit(ctx, target, seed,
      {source: needed}) -> {source: entry}`; `pair_seed`/groups: `unit(ctx, target, seed,
      [needed, ...]) -> [entry, ...]`. `needed` is the `value` of the (one) artifact in `needs` of
      the source (None for the null source).
    - `stage` the store folder (one of `transferbench.store.STAGES`); `settings` everything else
      the unit's output depends on and `code` the version to bump when the unit changes what it
      computes: both enter the store key, `key(spec, planner, address, options) -> dict` when given
      (the keys of artifacts older than this registry, kept byte-identical), else the default
      (`planner.Planner.key_inputs`). `options` are the unit's trailing arguments (a variant a
      caller may ask for, e.g. skill-neuron positions), part of the key.
    - `cost(sizes, config) -> progress.Work` one entry's examples forward and backward, from the
      split sizes of its task (the target's for a pair) and the prompt config (default: `examples`
      of the train split, forward only); it sizes progress, ETAs and the opening estimates.
    - `serve(entry)` what a `TaskView` holds per seed (or per task); `view(planner, task)` replaces
      the default view (per seed list; for a pair artifact, read on the target: {source: per seed}).
      `served`: whether views serve it and indicators may require it; `description` what indicator
      authors read (`indicator.ARTIFACTS`). `value(entry)` what a dependent unit receives.
    """

    per: str
    unit: Callable[..., Any] | str | None = None
    serve: Callable[[Any], Any] = _same
    stage: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    code: int = 1
    description: str = ""
    examples: Callable[[int], int] = lambda train_size: train_size
    needs: tuple[str, ...] = ()
    batching: str = "each"
    options: dict[str, Any] = field(default_factory=dict)
    key: Callable[..., dict[str, Any]] | None = None
    cost: Callable[[Sizes, Any], Work] | None = None
    view: Callable[[Any, str], Any] | None = None
    served: bool = True
    value: Callable[[Any], Any] = _same
    null_source: bool = False
    title: str = ""

    def __post_init__(self) -> None:
        if self.per not in PER:
            raise TransferbenchError(f"artifact per={self.per!r}: use one of {', '.join(PER)}")
        if self.unit is not None and self.batching not in BATCHING[self.per]:
            raise TransferbenchError(f"artifact per={self.per!r} batches as one of {', '.join(BATCHING[self.per])}, "
                                     f"not {self.batching!r}")
        if (self.unit is None) != (self.stage is None):
            raise TransferbenchError("an artifact computed by a unit names its store stage, a served-only one "
                                     "(no unit, a view) names none")
        if self.stage is not None and self.stage not in STAGES:
            raise TransferbenchError(f"artifact stage {self.stage!r} is not a cache folder of "
                                     f"transferbench.store.STAGES ({', '.join(STAGES)}); add it there")
        if self.unit is None and self.view is None:
            raise TransferbenchError("a served-only artifact (no unit) needs a `view`")
        if self.per == "pair_seed" and len(self.needs) > 1:
            raise TransferbenchError("a pair artifact's units read one artifact of each source (`needs`)")

    def unit_function(self) -> Callable[..., Any]:
        return import_target(self.unit) if isinstance(self.unit, str) else self.unit  # type: ignore[return-value]

    def work(self, sizes: Sizes, config: Any) -> Work:
        """Examples one entry processes (`cost`, else `examples` of the train split, forward only)."""
        if self.unit is None:
            return Work()
        return self.cost(sizes, config) if self.cost else Work(eval=self.examples(sizes.train))


# Every artifact, in planning order; installed packages add artifacts in the entry-point group
# `transferbench.pipeline.artifacts` (a "module:attr" naming an ArtifactSpec).

def _activations(with_inputs: bool, readout: str, title: str, description: str) -> ArtifactSpec:
    """A `mask_activations_unit` artifact: FFN activations with the prompt alone or averaged over the
    task's dev inputs, read at `readout` (`READOUTS`; "mask" stays out of the options, so the keys of
    the [MASK] artifacts are as they always were)."""
    options = {"with_inputs": with_inputs, **({} if readout == "mask" else {"readout": readout})}
    return ArtifactSpec(
        "task_seed", "transferbench.pipeline.units:mask_activations_unit", stage="activations", code=MASK_ACTIVATIONS_CODE,
        needs=("prompts",), options=options, key=_prompt_activation_key("mask_activations"),
        serve=lambda a: a["activations"].numpy(),
        cost=(lambda sizes, config: Work(eval=sizes.dev)) if with_inputs else (lambda sizes, config: Work(eval=1)),
        title=title, description=description)

ARTIFACTS: Registry[ArtifactSpec] = Registry("artifact", ArtifactSpec, group="transferbench.artifacts", ordered=True)


def declare_artifact(name: str, spec: ArtifactSpec) -> None:
    """Add an artifact: its one declaration. Indicators may then name it in `requires` (when
    `served`), transfer kinds in `cells`, other artifacts in `needs`."""
    if name in ARTIFACTS:
        raise TransferbenchError(f"artifact {name!r} is declared twice; choose another name")
    ARTIFACTS.add(name, spec)


@contextlib.contextmanager
def isolated_artifacts() -> Iterator[None]:
    """Artifacts declared in the block are forgotten afterwards (for tests)."""
    with isolated(ARTIFACTS):
        yield


def served_artifacts() -> dict[str, str]:
    """{name: description} of every artifact a `TaskView` serves (what `requires` may name)."""
    return {name: spec.description for name, spec in ARTIFACTS.items() if spec.served}


# ---- the keys of artifacts declared before this registry: byte-identical to the cache's -----------
def _prompt_key(spec: ArtifactSpec, p: Any, a: Address, options: dict) -> dict[str, Any]:
    return p.prompt_inputs(a.task, a.seed)


def _zero_shot_key(spec: ArtifactSpec, p: Any, a: Address, options: dict) -> dict[str, Any]:
    source = p.prompt_inputs(a.source, a.seed) if a.source else p.null_inputs(a.seed)
    return {**p.device_key(), "source": source, "target": p.task_identity(a.task), "kind": "zero_shot"}


def _init_key(spec: ArtifactSpec, p: Any, a: Address, options: dict) -> dict[str, Any]:
    return {"source": p.prompt_inputs(a.source, a.seed) if a.source else None,
            "target": p.prompt_inputs(a.task, a.seed), "kind": "init", "steps": p.config.init_steps}


def _prompt_activation_key(artifact: str) -> Callable[..., dict[str, Any]]:
    """Activations read with a task's own prompt: keyed by the prompt, the options and `code`."""

    def key(spec: ArtifactSpec, p: Any, a: Address, options: dict) -> dict[str, Any]:
        return {"prompt": p.prompt_inputs(a.task, a.seed), "artifact": artifact, **options, "code": spec.code}

    return key


def _frozen_key(artifact: str) -> Callable[..., dict[str, Any]]:
    """Features of the frozen backbone without a prompt: keyed by backbone, task and precision."""

    def key(spec: ArtifactSpec, p: Any, a: Address, options: dict) -> dict[str, Any]:
        return {**p.backbone_identity(), **p.task_identity(a.task), "artifact": artifact,
                "max_length": p.config.max_length, "bf16": p.config.bf16, "code": spec.code}

    return key


# ---- cost models (examples per entry) -------------------------------------------------------------
def _prompt_cost(sizes: Sizes, config: Any) -> Work:
    """`steps` training batches, a dev pass at every multiple of `eval_every` and at the last step,
    one test pass."""
    dev_passes = -(-config.steps // config.eval_every)
    return Work(train=config.steps * config.batch_size, eval=dev_passes * sizes.dev + sizes.test)


def _samples(p: Any, task: str) -> list[tuple[str, str, str]]:
    train = p.data(task).train
    labels = p.tasks[task].label_names
    return [(train[i]["text"], train[i]["text_pair"], labels[train[i]["label"]])
            for i in range(min(SAMPLE_COUNT, len(train)))]


def _skill_scores(artifact: str) -> Callable[[Any, str], np.ndarray]:
    """The view of a task's skill scores: those of `artifact` (skill neurons), averaged over seeds."""

    def view(p: Any, task: str) -> np.ndarray:
        return np.mean([p.get(artifact, task=task, seed=seed)["scores"].numpy() for seed in p.seeds], axis=0)

    return view


_CELL = "{{accuracy, predictions}} of the source prompt (None: {null}) on the target's test split"

for _name, _spec in {
    # ---- stage 2: own prompts ---------------------------------------------------------------------
    "prompts": ArtifactSpec(
        "task_seed", "transferbench.pipeline.units:train_prompts_unit", serve=lambda a: a["prompt"].numpy(), stage="prompts",
        batching="groups", key=_prompt_key, cost=_prompt_cost, value=lambda a: a["prompt"], title="train prompts",
        description="trained soft prompts, one [prompt_length, hidden] array per seed"),
    # ---- stage 3: measured transfer (never served to indicators) ----------------------------------
    "zero_shot": ArtifactSpec(
        "pair_seed", "transferbench.pipeline.units:zero_shot_row_unit", stage="transfer", needs=("prompts",), batching="row",
        null_source=True, key=_zero_shot_key, served=False, title="zero-shot transfer",
        cost=lambda sizes, config: Work(eval=sizes.test), description=_CELL.format(null="the null prompt")),
    "init": ArtifactSpec(
        "pair_seed", "transferbench.pipeline.units:init_accuracy_many_unit", stage="transfer", needs=("prompts",),
        batching="groups", null_source=True, key=_init_key, served=False, title="initialisation transfer",
        cost=lambda sizes, config: Work(train=config.init_steps * config.batch_size, eval=sizes.test),
        description=_CELL.format(null="the default initialisation") + " after init_steps of tuning from it"),
    "probe": ArtifactSpec(
        "task", "transferbench.pipeline.units:probe_unit", stage="probe", code=2, key=_frozen_key("probe"), served=False,
        cost=lambda sizes, config: Work(eval=sizes.train + sizes.test), title="linear probes",
        description="{predictions}: test predictions of a linear probe on frozen features"),
    # ---- stage 3: artifacts for indicators --------------------------------------------------------
    "skill_neurons": ArtifactSpec(
        "task_seed", "transferbench.pipeline.units:skill_neurons_unit", stage="skill_neurons", code=SKILL_NEURONS_CODE,
        needs=("prompts",), options={"positions": DEFAULT_SKILL_POSITIONS}, key=_prompt_activation_key("skill_neurons"),
        served=False, cost=lambda sizes, config: Work(eval=sizes.train + sizes.dev), title="skill neurons",
        description="{scores, thresholds} of a task's own prompt"),
    "skill_scores": ArtifactSpec(
        "task", needs=("skill_neurons",), view=_skill_scores("skill_neurons"),
        description="skill-neuron predictivity [layers, ffn_width], averaged over seeds"),
    "mask_activations": _activations(False, "mask", "mask activations",
                                     "FFN activations at the [MASK] position with the prompt alone, [layers, ffn_width] per seed"),
    "mask_activations_task": _activations(True, "mask", "mask activations on task inputs",
                                          "FFN activations at [MASK] averaged over task inputs, [layers, ffn_width] per seed"),
    # ---- the same, read where the verbalizer reads (`READOUTS`): new store keys, by their options ----
    "skill_neurons_readout": ArtifactSpec(
        "task_seed", "transferbench.pipeline.units:skill_neurons_unit", stage="skill_neurons", code=SKILL_NEURONS_CODE,
        needs=("prompts",), options={"positions": READOUT_SKILL_POSITIONS}, key=_prompt_activation_key("skill_neurons"),
        served=False, cost=lambda sizes, config: Work(eval=sizes.train + sizes.dev),
        title="skill neurons at the verbalizer's read-out",
        description="{scores, thresholds} of a task's own prompt at the prompt positions and the verbalizer's read-out"),
    "skill_scores_readout": ArtifactSpec(
        "task", needs=("skill_neurons_readout",), view=_skill_scores("skill_neurons_readout"),
        description="skill-neuron predictivity [layers, ffn_width] at the prompt positions and where the "
                    "verbalizer reads ([MASK] with an MLM head, else the mean over positions), averaged over seeds"),
    "readout_activations": _activations(
        False, "verbalizer", "read-out activations",
        "FFN activations where the verbalizer reads ([MASK] with an MLM head, else the mean over positions) with the "
        "prompt alone, [layers, ffn_width] per seed"),
    "readout_activations_task": _activations(
        True, "verbalizer", "read-out activations on task inputs",
        "FFN activations where the verbalizer reads, averaged over task inputs, [layers, ffn_width] per seed"),
    "text_embedding": ArtifactSpec(
        "task", "transferbench.pipeline.units:text_embedding_unit", stage="text_embedding", code=2,
        key=_frozen_key("text_embedding"), serve=lambda a: a["embedding"].numpy(), title="text embeddings",
        description="mean frozen-backbone sentence embedding of the task's training inputs, no prompt [hidden]"),
    "samples": ArtifactSpec(
        "task", view=_samples, description="up to 32 training examples: list of (text, text_pair, label name)"),
    "source_corpus": ArtifactSpec(
        "task", view=lambda p, task: p.tasks[task].source_corpus(),
        description="which corpus the task's texts come from (its data source's `corpus`; equal for tasks "
                    "derived from one corpus), a string"),
    "train_size": ArtifactSpec(
        "task", view=lambda p, task: p.data(task).source_size,
        description="number of usable labelled examples in the task's source (before subsampling)"),
    "pair_outputs": ArtifactSpec(
        "pair_seed", "transferbench.pipeline.units:pair_outputs_unit", stage="pair_outputs", needs=("prompts",),
        batching="row", settings={"examples": PAIR_EXAMPLES}, title="pair outputs",
        examples=lambda train_size: min(train_size, PAIR_EXAMPLES),
        serve=lambda a: PairOutputs(a["features"].numpy(), a["source_probs"].numpy(), a["target_labels"].numpy()),
        description="read on the target view: {source name: one PairOutputs per seed}, the backbone's outputs "
                    "on the target's first 256 train examples with the source's prompt"),
    "probe_ranking": ArtifactSpec(
        "task_seed", "transferbench.pipeline.units:probe_ranking_unit", stage="activations", needs=("prompts",),
        serve=lambda a: a["rank"].numpy(), title="probe rankings", examples=lambda train_size: min(train_size, PROBE_EXAMPLES),
        settings={"examples": PROBE_EXAMPLES, "l1": PROBE_L1, "l2": PROBE_L2, "max_iter": PROBE_MAX_ITER,
                  "positions": "prompt_mean"},
        description="elastic-net probe rank of each neuron (0 = most important), int [layers, ffn_width] per seed"),
}.items():
    ARTIFACTS.add(_name, _spec)
