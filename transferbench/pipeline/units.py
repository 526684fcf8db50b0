"""Units of work: the compute of stages 2 and 3 as pure functions (inputs in, artifact out).

`transferbench.pipeline.planner.Planner` decides what is missing from the store, hands these functions to
an executor (`transferbench.pipeline.executors`: in-process, or Ray tasks on other machines) and writes
what they return to its store. A unit never reads or writes the store itself, so it can run
anywhere, be retried, or run twice, and always gives the same tensors for the same inputs.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import torch
from sklearn.exceptions import ConvergenceWarning

from transferbench.pipeline.artifacts import (  # noqa: F401  (the artifacts' settings, re-exported)
    DEFAULT_SKILL_POSITIONS, PAIR_EXAMPLES, PROBE_EXAMPLES, PROBE_L1, PROBE_L2, PROBE_MAX_ITER, READOUTS,
)
from transferbench.errors import TransferbenchError
from transferbench.model.backbone import Backbone
from transferbench.model.kernels import autocast
from transferbench.model.neurons import predictivity, probe_ranking
from transferbench.model.prompt import (
    EncodedSplit, PromptConfig, PromptedOutput, TrainedPrompt, TrainJob, Verbalizer, accuracy, capture_ffn,
    encode_split, initial_prompt, mean_pool, predict, predict_many, prompted_attention_mask, prompted_forward,
    read_out, train_prompts,
)
from transferbench.store import content_key
from transferbench.tasks import SuiteSpec, TaskData, TaskSpec, load_task_data, suite_tasks


@dataclass(frozen=True, eq=False)
class UnitContext:
    """What every unit of one benchmark shares: small, picklable, and enough to rebuild the
    heavy objects (backbone, task data, tokenized splits, verbalizers) in any process.

    `threads` is the number of intra-op PyTorch threads every unit runs with: CPU kernels (bfloat16
    matrix multiplies above all) round differently with different thread counts, so it is part of
    what a unit's output depends on, and it is the same wherever the unit runs.
    """

    suite: SuiteSpec
    backbone: str
    config: PromptConfig
    tasks: tuple[str, ...]
    threads: int = 1
    device: str = "cpu"  # where units compute (`backbone.resolve_device`); a Ray task uses the GPU it reserved
    train_attention: str = "sdpa"  # the attention kernel of training steps (`kernels.resolve_train_attention`)
    eval_kernel: str = "autocast"  # how evaluation computes (`kernels.EVAL_KERNEL`)

    @cached_property
    def fingerprint(self) -> str:
        return content_key({"suite": self.suite.model_dump(mode="json"), "backbone": self.backbone,
                            "config": self.config.to_dict(), "tasks": list(self.tasks), "threads": self.threads,
                            "device": self.device, "train_attention": self.train_attention,
                            "eval_kernel": self.eval_kernel})


class LoadedSuite:
    """The heavy objects of one `UnitContext` in this process, each built on first use."""

    def __init__(self, ctx: UnitContext):
        self.ctx = ctx
        self.config = ctx.config
        self.specs: dict[str, TaskSpec] = {spec.name: spec for spec in suite_tasks(ctx.suite)}
        self._data: dict[str, TaskData] = {}
        self._encoded: dict[tuple[str, str], EncodedSplit] = {}
        self._verbalizers: dict[str, Verbalizer] = {}

    @cached_property
    def backbone(self) -> Backbone:
        return Backbone(self.ctx.backbone, device=self.ctx.device)

    def data(self, task: str) -> TaskData:
        if task not in self._data:
            self._data[task] = load_task_data(self.specs[task], self.ctx.suite)
        return self._data[task]

    def encoded(self, task: str, split: str) -> EncodedSplit:
        if (task, split) not in self._encoded:
            dataset = getattr(self.data(task), split)
            self._encoded[task, split] = encode_split(self.backbone, dataset, self.config.max_length,
                                                      self.config.prompt_length)
        return self._encoded[task, split]

    def verbalizer(self, task: str) -> Verbalizer:
        if task not in self._verbalizers:
            spec = self.specs[task]
            words = [spec.verbalizers[label] for label in spec.label_names]
            self._verbalizers[task] = Verbalizer(self.backbone, words, self.config.cosine_scale)
        return self._verbalizers[task]


# A Ray worker runs many units of the same benchmark: it loads the backbone once. Two entries keep
# memory bounded when one process (a test session) sees several benchmarks in turn.
_LOADED: OrderedDict[str, LoadedSuite] = OrderedDict()
_LOADED_LIMIT = 2


def loaded(ctx: UnitContext) -> LoadedSuite:
    """This process's `LoadedSuite` for `ctx` (built once, then reused), with PyTorch set to
    `ctx.threads` threads before anything is computed (the verbalizer's label encodings included)."""
    torch.set_num_threads(ctx.threads)
    key = ctx.fingerprint
    if key in _LOADED:
        _LOADED.move_to_end(key)
    else:
        _LOADED[key] = LoadedSuite(ctx)
        while len(_LOADED) > _LOADED_LIMIT:
            _LOADED.popitem(last=False)
    return _LOADED[key]


# ---- stage 2: prompts ------------------------------------------------------------------------------
def train_prompt_unit(ctx: UnitContext, task: str, seed: int) -> dict[str, Any]:
    """A task's own prompt: {"prompt", "dev_accuracy", "test_accuracy", "test_predictions",
    "best_step", "losses"} (per-example test predictions, so any score of it can be recomputed)."""
    return train_prompts_unit(ctx, [(task, seed)])[0]


def train_prompts_unit(ctx: UnitContext, pairs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """`train_prompt_unit` for every (task, seed) of `pairs`, trained together (`train_prompts`)."""
    suite = loaded(ctx)
    jobs = [TrainJob(suite.encoded(task, "train"), suite.encoded(task, "dev"), suite.verbalizer(task), seed)
            for task, seed in pairs]
    trained = train_prompts(suite.backbone, jobs, ctx.config, attention=ctx.train_attention,
                            eval_kernel=ctx.eval_kernel)
    return [_own_prompt(suite, task, one) for (task, _), one in zip(pairs, trained)]


def _own_prompt(suite: LoadedSuite, task: str, trained: TrainedPrompt) -> dict[str, Any]:
    test = suite.encoded(task, "test")
    predictions = predict(suite.backbone, trained.prompt, test, suite.verbalizer(task), suite.config,
                          suite.ctx.eval_kernel)
    return {"prompt": trained.prompt, "dev_accuracy": trained.dev_accuracy,
            "test_accuracy": accuracy(predictions, test.labels), "test_predictions": torch.from_numpy(predictions),
            "best_step": trained.best_step, "losses": torch.tensor(trained.losses)}


# ---- stage 3: measured transfer --------------------------------------------------------------------
def zero_shot_row_unit(ctx: UnitContext, target: str, seed: int,
                       prompts: dict[str | None, torch.Tensor | None]) -> dict[str | None, dict[str, Any]]:
    """{source: {"accuracy", "predictions"}} on `target`'s test split (with the target's
    verbalizer) for each source prompt in `prompts`, all evaluated in one batched pass
    (`predict_many`). The source `None` stands for the null prompt: the untrained initial prompt
    of `seed` (`initial_prompt`), which measures what the verbalizer alone achieves."""
    suite = loaded(ctx)
    sources = list(prompts)
    test = suite.encoded(target, "test")
    null = initial_prompt(suite.backbone, ctx.config.prompt_length, seed)
    stacked = torch.stack([null if s is None else prompts[s] for s in sources])
    predictions = predict_many(suite.backbone, stacked, test, suite.verbalizer(target), ctx.config, ctx.eval_kernel)
    return {s: {"accuracy": torch.tensor(accuracy(row, test.labels)), "predictions": torch.from_numpy(row)}
            for s, row in zip(sources, predictions)}


def init_accuracy_unit(ctx: UnitContext, source_prompt: torch.Tensor | None, target: str, seed: int) -> dict[str, Any]:
    """{"accuracy", "predictions"}: test accuracy (and per-example test predictions) on `target`
    after `init_steps` of prompt tuning from `source_prompt` (None: the default initialisation),
    with `seed`'s data order."""
    return init_accuracy_many_unit(ctx, target, seed, [source_prompt])[0]


def init_accuracy_many_unit(ctx: UnitContext, target: str, seed: int,
                            source_prompts: list[torch.Tensor | None]) -> list[dict[str, Any]]:
    """`init_accuracy_unit` for several source prompts on one target, trained together
    (`train_prompts`: every job draws the same batches, `seed`'s data order)."""
    suite = loaded(ctx)
    budget = replace(ctx.config, steps=ctx.config.init_steps)
    train, verbalizer = suite.encoded(target, "train"), suite.verbalizer(target)
    # dev=None: no checkpoint selection, both arms are judged by their final prompt
    jobs = [TrainJob(train, None, verbalizer, seed, init) for init in source_prompts]
    trained = train_prompts(suite.backbone, jobs, budget, attention=ctx.train_attention, eval_kernel=ctx.eval_kernel)
    return [_test_result(suite, target, one.prompt, budget) for one in trained]


def _test_result(suite: LoadedSuite, target: str, prompt: torch.Tensor, config: PromptConfig) -> dict[str, Any]:
    """{"accuracy", "predictions"} of `prompt` on `target`'s test split."""
    test = suite.encoded(target, "test")
    predictions = predict(suite.backbone, prompt, test, suite.verbalizer(target), config, suite.ctx.eval_kernel)
    return {"accuracy": torch.tensor(accuracy(predictions, test.labels)), "predictions": torch.from_numpy(predictions)}


# ---- stage 3: artifacts for indicators -------------------------------------------------------------
@torch.no_grad()
def ffn_activations(ctx: UnitContext, task: str, prompt: torch.Tensor, split: str,
                    positions: list[int], readout: bool = False) -> torch.Tensor:
    """FFN activations `[examples, layers, len(positions) (+ 1), ffn]` of `prompt` on a split of
    `task`; with `readout`, one more position last: the activations read where the backbone's
    verbalizer reads its output (`prompt.read_out`: [MASK] with an MLM head, else the mean over
    the example's attended positions, [CLS], prompt, [MASK], text and [SEP])."""
    suite = loaded(ctx)
    backbone, encoded = suite.backbone, suite.encoded(task, split)
    out = torch.zeros(len(encoded), backbone.num_layers, len(positions) + int(readout), backbone.ffn_width)
    pad = backbone.tokenizer.pad_token_id
    attention: list[torch.Tensor] = []  # the current batch's prompted attention mask, for the read-out
    reduce = _with_readout(backbone, positions, prompt.shape[0], attention) if readout else None
    with capture_ffn(backbone, positions, reduce) as captured, autocast(ctx.config, backbone):
        for index in encoded.length_sorted_batches(ctx.config.eval_batch_size):
            batch = encoded.batch(index, pad)
            if readout:
                attention[:] = [prompted_attention_mask(batch["attention_mask"], prompt.shape[0]).to(backbone.device)]
            prompted_forward(backbone, prompt, batch)
            out[index] = captured.pop()
    return out


def _with_readout(backbone: Backbone, positions: list[int], prompt_length: int, attention: list[torch.Tensor]):
    """`capture_ffn`'s `reduce`: one layer's activations at `positions`, then their verbalizer
    read-out (`read_out`, in float32) over the attention mask `attention[0]` of the pass."""

    def reduce(states: torch.Tensor) -> torch.Tensor:
        read = read_out(backbone.head, states.float(), attention[0], prompt_length + 1)
        return torch.cat([states[:, positions].float(), read.unsqueeze(1)], dim=1)

    return reduce


# Which positions of the template `[CLS] p_1 .. p_n [MASK] text` the skill-neuron scores read
# (`skill_positions`); "mask+prompt" is the reference code's choice; the "readout" sets put the
# verbalizer's read-out (`prompt.read_out`) in the place of [MASK].
SKILL_POSITION_SETS = ("mask+prompt", "prompt", "mask", "readout+prompt", "readout")


def skill_positions(prompt_length: int, which: str = DEFAULT_SKILL_POSITIONS) -> list[int]:
    """Sequence positions whose FFN activations the skill-neuron scores read, in sequence order
    (for the "readout" sets, those read besides the verbalizer's read-out, `reads_readout`).

    Our template is `[CLS] p_1 .. p_n [MASK] text` (`transferbench.model.prompt.prompted_forward`): the
    prompt sits at positions 1..n and the [MASK] token at n + 1. The reference code
    (THU-KEG/Skill-Neuron, `src/modelzoo.py`, `MLMPromptBaseModel.forward`) builds
    `[MASK] p_1 .. p_(n-1) <s> text` and its probes (`src/trainer.py`, `probe_avg`/`probe_acc`)
    keep positions `0 .. prompt_size - 1`: the [MASK] and the prompt. So "mask+prompt" (the
    default, as the reference) is `[1, .., n, n + 1]`, "prompt" is `[1, .., n]` (transferbench
    before issue 13) and "mask" is `[n + 1]`.

    Why n + 1 plays [MASK]'s role here: it holds the same [MASK] token, next to the prompt as in the
    reference, and it is where an MLM head reads the label words (`Verbalizer`, MLM backbones), as
    the reference's verbalizer reads position 0. Our default backbone has no MLM head; its cosine
    verbalizer reads the mean of the output over every position, so no single position is the
    prediction position there, and the [MASK] token (the one position whose input is neither
    prompt nor text) is the same position Su et al.'s activated-neuron overlap reads
    (`mask_activations_unit`). "readout+prompt" is `[1, .., n]` plus the verbalizer's read-out
    (`ffn_activations(readout=True)`): on an MLM backbone the [MASK] position n + 1, the same
    activations as "mask+prompt"; on a cosine one their mean over the example's attended positions
    (docs/indicators.md, "Read-out-aware neuron indicators"); "readout" is the read-out alone.
    """
    if which not in SKILL_POSITION_SETS:
        raise TransferbenchError(f"skill-neuron positions must be one of {', '.join(SKILL_POSITION_SETS)}, "
                                 f"got {which!r}")
    prompt = list(range(1, 1 + prompt_length))
    mask = [1 + prompt_length]
    return {"mask+prompt": prompt + mask, "prompt": prompt, "mask": mask, "readout+prompt": prompt,
            "readout": []}[which]


def reads_readout(which: str) -> bool:
    """Whether the skill-neuron position set `which` ends with the verbalizer's read-out."""
    return which.startswith("readout")


def skill_position_activations(ctx: UnitContext, task: str, prompt: torch.Tensor, split: str,
                               positions: str = DEFAULT_SKILL_POSITIONS) -> torch.Tensor:
    """FFN activations `[examples, layers, positions, ffn]` of `prompt` on a split of `task`, at
    the positions the skill-neuron scores read (`skill_positions(n, positions)`, then the
    read-out for the "readout" sets)."""
    return ffn_activations(ctx, task, prompt, split, skill_positions(prompt.shape[0], positions),
                           readout=reads_readout(positions))


def skill_neurons_unit(ctx: UnitContext, task: str, seed: int, prompt: torch.Tensor,
                       positions: str = DEFAULT_SKILL_POSITIONS) -> dict[str, torch.Tensor]:
    """{"scores", "thresholds"} of `task`'s own prompt (`transferbench.model.neurons.predictivity`).

    As the reference code (THU-KEG/Skill-Neuron, `src/probe.py`, probe type "acc": `probe_avg`
    on train, then `probe_acc` on valid): thresholds are the mean activations at the scored
    positions (`skill_positions(n, positions)`: by default the prompt and the [MASK] position, as
    the reference) over the whole **train** split (they use no labels), accuracy is measured on
    the whole **dev** split, which no gradient step has seen. `thresholds` is
    `[layers, positions, ffn]`, positions in sequence order (the read-out last).
    """
    # only the mean of the train activations is kept, so dev is computed after they are freed
    thresholds = skill_position_activations(ctx, task, prompt, "train", positions).mean(0)
    dev = skill_position_activations(ctx, task, prompt, "dev", positions)
    labels = loaded(ctx).encoded(task, "dev").labels
    scores = predictivity(thresholds.unsqueeze(0), dev, labels)  # the mean of one "example" is itself
    return {"scores": torch.from_numpy(scores), "thresholds": thresholds}


@torch.no_grad()
def mask_activations_unit(ctx: UnitContext, task: str, seed: int, prompt: torch.Tensor,
                          with_inputs: bool, readout: str = "mask") -> dict[str, torch.Tensor]:
    """{"activations"}: FFN activations `[layers, ffn]` of the prompt alone (Su et al. 2022) or
    averaged over the task's dev inputs, read at the [MASK] position (`readout="mask"`, the
    papers') or where the backbone's verbalizer reads its output (`readout="verbalizer"`,
    `prompt.read_out`: [MASK] with an MLM head, the mean over attended positions without one)."""
    if readout not in READOUTS:
        raise TransferbenchError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
    verbalizer = readout == "verbalizer"
    position = [] if verbalizer else [1 + prompt.shape[0]]
    if with_inputs:
        return {"activations": ffn_activations(ctx, task, prompt, "dev", position, verbalizer)[:, :, 0].mean(0)}
    backbone = loaded(ctx).backbone
    tokenizer = backbone.tokenizer
    ids = torch.tensor([[tokenizer.cls_token_id, tokenizer.sep_token_id]])
    ones = torch.ones_like(ids)
    reduce = _with_readout(backbone, [], prompt.shape[0], [prompted_attention_mask(ones, prompt.shape[0]).to(
        backbone.device)]) if verbalizer else None
    with capture_ffn(backbone, position, reduce) as captured, autocast(ctx.config, backbone):
        prompted_forward(backbone, prompt, {"input_ids": ids, "attention_mask": ones,
                                            "token_type_ids": torch.zeros_like(ids)})
    return {"activations": captured[0][0, :, 0]}


@torch.no_grad()
def pooled_features(ctx: UnitContext, task: str, split: str) -> torch.Tensor:
    """The frozen backbone's mean-pooled output `[examples, hidden]` on a split, without a prompt."""
    suite = loaded(ctx)
    backbone, encoded = suite.backbone, suite.encoded(task, split)
    pad = backbone.tokenizer.pad_token_id
    out = torch.zeros(len(encoded), backbone.hidden_size)
    with autocast(ctx.config, backbone):
        for index in encoded.length_sorted_batches(ctx.config.eval_batch_size):
            batch = encoded.batch(index, pad)
            kwargs = {k: v.to(backbone.device) for k, v in batch.items() if k in backbone.tokenizer.model_input_names}
            hidden = backbone.encoder(**kwargs).last_hidden_state
            out[index] = mean_pool(hidden, batch["attention_mask"].to(backbone.device)).float().cpu()
    return out


def text_embedding_unit(ctx: UnitContext, task: str) -> dict[str, torch.Tensor]:
    """{"embedding"}: mean over training inputs of the frozen backbone's mean-pooled output, no prompt."""
    return {"embedding": pooled_features(ctx, task, "train").mean(0)}


def probe_unit(ctx: UnitContext, task: str) -> dict[str, torch.Tensor]:
    """{"predictions"}: test predictions of a linear probe, the yardstick for prompt quality.

    An L2-regularised logistic regression (scikit-learn, lbfgs, C=1, class-balanced weights) on the
    frozen backbone's mean-pooled features of the train split, i.e. what a linear classifier can
    read off the same frozen representation the prompt steers.
    """
    from sklearn.linear_model import LogisticRegression

    suite = loaded(ctx)
    features = {split: pooled_features(ctx, task, split).numpy() for split in ("train", "test")}
    probe = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    probe.fit(features["train"], suite.encoded(task, "train").labels.numpy())
    return {"predictions": torch.from_numpy(probe.predict(features["test"]).astype("int64"))}


# ---- stage 3: pair outputs and probe rankings (their settings: `transferbench.pipeline.artifacts`) ----------
def first_examples(encoded: EncodedSplit, count: int) -> EncodedSplit:
    """The first `count` examples of a tokenized split (splits are shuffled when they are made)."""
    types = encoded.token_type_ids[:count] if encoded.token_type_ids is not None else None
    return EncodedSplit(encoded.input_ids[:count], types, encoded.labels[:count].clone())


@torch.no_grad()
def pair_outputs_unit(ctx: UnitContext, target: str, seed: int,
                      prompts: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """{source: {"features", "source_probs", "target_labels"}} on `target`'s first `PAIR_EXAMPLES`
    train examples, for every source prompt in `prompts` (see `transferbench.scoring.indicator.PairOutputs`).

    All sources run in one batched pass, one prompt per row (the trick of `predict_many`); each
    source's rows are scored with the source's own verbalizer, so `source_probs` is the source
    classifier's distribution over the source's labels, as LEEP and NCE need.
    """
    suite = loaded(ctx)
    backbone = suite.backbone
    train = first_examples(suite.encoded(target, "train"), PAIR_EXAMPLES)
    sources = list(prompts)
    count, size = len(sources), len(train)
    stacked = torch.stack([prompts[s] for s in sources])
    verbalizers = [suite.verbalizer(s) for s in sources]
    features = torch.zeros(count, size, backbone.hidden_size)
    probs = [torch.zeros(size, suite.specs[s].num_classes) for s in sources]
    pad = backbone.tokenizer.pad_token_id
    with autocast(ctx.config, backbone):
        for index in train.length_sorted_batches(max(1, ctx.config.eval_batch_size // count), copies=count):
            batch = train.batch(index, pad)
            rows = stacked.repeat_interleave(len(index), dim=0)  # row k * len(index) + i: source k, example i
            output = prompted_forward(backbone, rows, {k: v.repeat(count, 1) for k, v in batch.items()})
            pooled = mean_pool(output.hidden.float(), output.attention_mask)
            features[:, index] = pooled.view(count, len(index), -1).cpu()
            for k, verbalizer in enumerate(verbalizers):
                part = slice(k * len(index), (k + 1) * len(index))
                own = PromptedOutput(output.hidden[part], output.attention_mask[part], output.mask_hidden[part])
                probs[k][index] = verbalizer.logits(own).softmax(-1).cpu()
    return {s: {"features": features[k].clone(), "source_probs": probs[k], "target_labels": train.labels.clone()}
            for k, s in enumerate(sources)}


@torch.no_grad()
def probe_ranking_unit(ctx: UnitContext, task: str, seed: int, prompt: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"rank"}: `int64 [layers, ffn_width]`, each FFN neuron's position (0 = most important) in
    the ranking of `transferbench.model.neurons.probe_ranking` (l1 = `PROBE_L1`, l2 = `PROBE_L2`) on the task's first
    `PROBE_EXAMPLES` train examples with its own prompt.

    A neuron's input to the probe is its activation averaged over the prompt positions: one
    feature per neuron (`layers * ffn_width` features) rather than one per (neuron, position),
    which, with at most `PROBE_MAX_ITER` saga epochs, keeps the probe's cost bounded.
    """
    suite = loaded(ctx)
    backbone = suite.backbone
    train = first_examples(suite.encoded(task, "train"), PROBE_EXAMPLES)
    activations = torch.zeros(len(train), backbone.num_layers * backbone.ffn_width)
    pad = backbone.tokenizer.pad_token_id
    with capture_ffn(backbone, list(range(1, 1 + prompt.shape[0]))) as captured, autocast(ctx.config, backbone):
        for index in train.length_sorted_batches(ctx.config.eval_batch_size):
            prompted_forward(backbone, prompt, train.batch(index, pad))
            activations[index] = captured.pop().mean(2).flatten(1)  # [B, layers, positions, ffn] -> [B, layers * ffn]
    with warnings.catch_warnings():  # stopping at PROBE_MAX_ITER before tolerance is the plan
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        order = probe_ranking(activations.numpy(), train.labels.numpy(), l1=PROBE_L1, l2=PROBE_L2,
                              max_iter=PROBE_MAX_ITER)
    rank = torch.empty(order.size, dtype=torch.long)
    rank[torch.from_numpy(order)] = torch.arange(order.size)
    return {"rank": rank.view(backbone.num_layers, backbone.ffn_width)}
