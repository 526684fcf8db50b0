"""Soft prompts on a frozen backbone: the input template, the verbalizer, and the training loop.

Stage 2 of the pipeline. Only the prompt (a `[prompt_length, hidden]` tensor) is trained; there
is no classifier head per task, so everything a task learns lives in its prompt.

Input template: `[CLS] p_1 .. p_n [MASK] text [SEP] (text_pair [SEP])`. The mask position is the
"prediction position" (where an MLM head scores label words, and where Su et al.'s activated-neuron
overlap reads activations); positions 1..n are the prompt positions (skill neurons are read there
and at the mask position, `transferbench.pipeline.units.skill_positions`).

Over 400 lines because encoding, the prompted forward pass, prediction and training (one prompt or
many per pass) share one input template; split, they would drift apart. How their passes compute
(precision, attention and evaluation kernels) is `transferbench.model.kernels`.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transferbench import progress as progress_bar
from transferbench.errors import TransferbenchError
from transferbench.model.backbone import Backbone
from transferbench.model.kernels import (
    autocast_dtype, check_eval_kernel, evaluation, forward_precision, precision_name, reduced_precision,
    resolve_train_attention, training_attention,
)

# Bump when a change here changes what a trained prompt or a measured score would be.
PROMPT_CODE_VERSION = 2  # 2: artifacts carry per-example test predictions


# Dev-selection rules of `PromptConfig.select_metric`.
SELECT_METRICS = ("accuracy", "balanced_accuracy")
# Settings added after the v1 reference, with the default that leaves them out of `to_dict`.
_LATER_DEFAULTS = {"select_metric": "accuracy"}


@dataclass(frozen=True)
class PromptConfig:
    """Hyperparameters of prompt tuning (a suite's `training:` block overrides the defaults)."""

    prompt_length: int = 16
    steps: int = 150
    batch_size: int = 16
    lr: float = 0.03
    max_length: int = 96  # text tokens kept after truncation (see `encode_split`)
    eval_every: int = 50
    cosine_scale: float = 20.0
    bf16: bool = True
    eval_batch_size: int = 64
    init_steps: int = 30  # budget of transfer by initialisation (both arms train this many steps)
    # How dev evaluation picks the kept prompt: "accuracy" (the v1 reference's) or
    # "balanced_accuracy" (mean per-class recall, the protocol's metric: on a one-vs-rest task a
    # prompt that predicts the majority class has high accuracy and chance balanced accuracy).
    select_metric: str = "accuracy"

    # Smallest value of each integer setting (max_length: room for [CLS], one token and [SEP]).
    _MINIMUM = {"prompt_length": 1, "steps": 1, "batch_size": 1, "max_length": 3, "eval_every": 1,
                "eval_batch_size": 1, "init_steps": 1}

    def __post_init__(self) -> None:
        """Reject values that would crash training or silently train nothing (`steps: 0`)."""
        for name, minimum in self._MINIMUM.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise TransferbenchError(f"training.{name} must be an integer >= {minimum}, got {value!r}")
        for name, zero_allowed in (("lr", True), ("cosine_scale", False)):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not number or value < 0 or (value == 0 and not zero_allowed):
                relation = ">=" if zero_allowed else ">"
                raise TransferbenchError(f"training.{name} must be a finite number {relation} 0, got {value!r}")
        if self.select_metric not in SELECT_METRICS:
            raise TransferbenchError(f"training.select_metric must be one of {', '.join(SELECT_METRICS)}, "
                                     f"got {self.select_metric!r}")
        if self.bf16 not in (True, False):  # also admits 0 and 1, as YAML numbers read them
            raise TransferbenchError(f"training.bf16 must be true or false, got {self.bf16!r}")

    @classmethod
    def from_overrides(cls, overrides: dict, where: str = "suite") -> "PromptConfig":
        """The defaults with a suite's `training:` block applied; `where` (the suite file) starts
        every error message."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TransferbenchError(
                f"{where}: unknown prompt-training setting(s) {unknown}; known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**overrides)
        except TransferbenchError as exc:
            raise TransferbenchError(f"{where}: field {exc}; fix the suite's training block") from None

    def to_dict(self) -> dict:
        """Every setting, except those added after the v1 reference while they keep their default:
        the dict keys stored artifacts and is recorded in bundles, so a new setting at its default
        leaves every existing key and record as it was."""
        return {k: v for k, v in asdict(self).items() if k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k]}


@dataclass
class EncodedSplit:
    """A split tokenized once (no padding); batches are padded to their own longest example."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.input_ids)

    def batch(self, index: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        width = max(len(self.input_ids[i]) for i in index)
        ids = torch.full((len(index), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        types = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            seq = self.input_ids[i]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            if self.token_type_ids is not None:
                types[row, : len(seq)] = torch.tensor(self.token_type_ids[i])
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def length_sorted_batches(self, batch_size: int, copies: int = 1) -> Iterator[list[int]]:
        """Batches of similar lengths (less padding), for evaluation where order does not matter.
        `copies`: how many rows the caller's pass runs per example (one per prompt evaluated
        together), the evaluation examples each batch reports to `transferbench.progress`."""
        order = sorted(range(len(self)), key=lambda i: len(self.input_ids[i]))
        progress_bar.loop_started(-(-len(order) // batch_size))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            yield batch
            progress_bar.batch_done(len(batch) * copies)


def encode_split(backbone: Backbone, split, max_length: int, prompt_length: int = 0) -> EncodedSplit:
    """Tokenize a `datasets.Dataset` with columns text, text_pair, label.

    Truncation rule: at most `max_length` tokens including [CLS]/[SEP]; for text pairs the longer
    text is cut first (the tokenizer's "longest_first"). The prompt and [MASK] add
    `prompt_length + 1` positions, which must fit the backbone's position embeddings.
    """
    if max_length + prompt_length + 1 > backbone.max_positions:
        raise TransferbenchError(
            f"max_length {max_length} + prompt_length {prompt_length} + 1 exceeds the {backbone.max_positions} "
            f"positions of backbone {backbone.name!r}; lower max_length in the suite's training block"
        )
    texts = list(split["text"])
    pairs = list(split["text_pair"]) if "text_pair" in split.column_names else None
    if pairs is not None and not any(pairs):
        pairs = None
    encoded = backbone.tokenizer(
        texts, pairs, truncation=True, max_length=max_length, return_attention_mask=False
    )
    types = encoded.get("token_type_ids")
    return EncodedSplit(
        input_ids=encoded["input_ids"],
        token_type_ids=types,
        labels=torch.tensor(list(split["label"]), dtype=torch.long),
    )


class Verbalizer:
    """Maps label words to scores from the backbone's own representation (no trained head).

    - MLM head: a label's logit is the mean MLM logit of its words' first sub-tokens at [MASK]
      (a word is tokenized with a leading space, as it appears mid-sentence, for BPE vocabularies).
      This is the seed papers' read-out: their reference code scores RoBERTa's MLM logits at
      `<mask>` for one word per label, the word's first token (thunlp/Prompt-Transferability,
      `Prompt-Transferability-1.0/model/PromptRoberta.py`; THU-KEG/Skill-Neuron, `src/modelzoo.py`,
      `getverablizer`). Recorded as `verbalizer: mlm_head_at_mask` in the backbone identity of a
      packaged masked LM (`backbone.backbone_identity`); docs/protocol.md, "Masked-LM backbone".
    - No MLM head (our default backbone): `scale * cos(mean-pooled output, label encoding)`, where a
      label's encoding is the mean-pooled frozen-backbone output of its words (averaged over words).
      Measured on this backbone: this learns much faster than dot products against the tied input
      embeddings at [MASK] (see README, "Design choices").

    Which positions each head reads is `read_out`, which the read-out-aware neuron artifacts apply
    to FFN activations (`transferbench.pipeline.units.ffn_activations`); tests/test_readout_neurons.py pins
    that it reads what `logits` reads.
    """

    def __init__(self, backbone: Backbone, label_words: Sequence[Sequence[str]], scale: float):
        self.backbone = backbone
        self.scale = scale
        tokenizer = backbone.tokenizer
        if backbone.head == "mlm":
            spaced = tokenizer.tokenize("a b")[-1] != "b"  # BPE vocabularies mark a leading space
            self.word_ids = [
                [tokenizer((" " + w) if spaced else w, add_special_tokens=False)["input_ids"][0] for w in words]
                for words in label_words
            ]
        else:
            with torch.no_grad():
                encodings = []
                for words in label_words:
                    batch = tokenizer(list(words), padding=True, return_tensors="pt").to(backbone.device)
                    hidden = backbone.encoder(**batch).last_hidden_state
                    encodings.append(mean_pool(hidden, batch["attention_mask"]).mean(0))
                self.label_encodings = F.normalize(torch.stack(encodings), dim=-1)

    def logits(self, output: "PromptedOutput") -> torch.Tensor:
        """Label logits `[B, labels]`, always in float32: under bf16 autocast a matrix product
        would round them to ~0.1 at this scale and make close labels tie."""
        with torch.autocast(self.backbone.device.type, enabled=False):
            if self.backbone.head == "mlm":
                vocab_logits = self.backbone.mlm_head(output.mask_hidden.float())
                return torch.stack([vocab_logits[:, ids].mean(-1) for ids in self.word_ids], dim=-1)
            pooled = F.normalize(mean_pool(output.hidden.float(), output.attention_mask), dim=-1)
            return self.scale * pooled @ self.label_encodings.T


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over attended positions (sentence-transformers' pooling)."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


READ_OUTS = {"mlm": "the [MASK] position", "cosine": "the mean over attended positions"}
"""What the verbalizer of each head reads of the backbone's output (`Verbalizer.logits`)."""


def read_out(head: str, states: torch.Tensor, attention_mask: torch.Tensor, mask_position: int) -> torch.Tensor:
    """Per-position states `[B, L, ...]` reduced to `[B, ...]` where the verbalizer of `head` reads
    the output (`READ_OUTS`): the [MASK] position (`mask_position`, n + 1 in the template) for an
    MLM head, the mean over attended positions (`mean_pool`, every position of the template but
    padding) for the cosine verbalizer."""
    if head == "mlm":
        return states[:, mask_position]
    return mean_pool(states, attention_mask)


@dataclass
class PromptedOutput:
    hidden: torch.Tensor  # [B, L, H] last hidden states
    attention_mask: torch.Tensor  # [B, L]
    mask_hidden: torch.Tensor  # [B, H] last hidden state at [MASK] (the prediction position)


def prompted_forward(
    backbone: Backbone, prompt: torch.Tensor, batch: dict[str, torch.Tensor], encoder: nn.Module | None = None,
) -> PromptedOutput:
    """Run the frozen backbone on `[CLS] prompt [MASK] text...`.

    `prompt` is `[n, H]` (one prompt for the batch) or `[B, n, H]` (one prompt per example, which
    lets many prompts be evaluated in one batched forward pass). `encoder`: another module to run
    in place of `backbone.encoder` on the same inputs (the compiled copy of
    `Backbone.compiled_encoder`), the input embeddings cast to its dtype.
    """
    device = backbone.device
    ids, mask, types = (batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids"))
    size = ids.shape[0]
    embed = backbone.word_embeddings
    words = embed(ids)
    prompt = prompt.to(device)
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0).expand(size, -1, -1)
    n = prompt.shape[1]
    mask_token = embed(torch.tensor([backbone.tokenizer.mask_token_id], device=device)).expand(size, 1, -1)
    inputs = torch.cat([words[:, :1], prompt.to(words.dtype), mask_token, words[:, 1:]], dim=1)
    ones = torch.ones((size, n + 1), dtype=mask.dtype, device=device)
    attention = prompted_attention_mask(mask, n)
    kwargs = {"inputs_embeds": inputs, "attention_mask": attention}
    if "token_type_ids" in backbone.tokenizer.model_input_names:
        kwargs["token_type_ids"] = torch.cat([types[:, :1], 0 * ones, types[:, 1:]], dim=1)
    if encoder is None:
        encoder = backbone.encoder
    else:
        kwargs["inputs_embeds"] = inputs.to(encoder.dtype)
    hidden = encoder(**kwargs).last_hidden_state
    return PromptedOutput(hidden, attention, hidden[:, n + 1])


def prompted_attention_mask(attention_mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """The attention mask `[B, L + n + 1]` of `[CLS] p_1 .. p_n [MASK] text` given the text's
    `[B, L]` (`prompted_forward`): the prompt and [MASK] positions are always attended."""
    ones = torch.ones((attention_mask.shape[0], prompt_length + 1), dtype=attention_mask.dtype,
                      device=attention_mask.device)
    return torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)


def initial_prompt(backbone: Backbone, length: int, seed: int) -> torch.Tensor:
    """Default initialisation: embeddings of `length` vocabulary tokens drawn with `seed`.

    Sampling real token embeddings (Lester et al., 2021) keeps the prompt on the embedding scale.
    """
    generator = torch.Generator().manual_seed(seed)
    vocab = backbone.word_embeddings.weight
    low = min(1000, vocab.shape[0] // 2)  # skip special and unused tokens at the start of BERT vocabularies
    ids = torch.randint(low, vocab.shape[0], (length,), generator=generator)
    return vocab[ids.to(vocab.device)].detach().float().cpu().clone()


@torch.no_grad()
def predict(
    backbone: Backbone, prompt: torch.Tensor, split: EncodedSplit, verbalizer: Verbalizer,
    config: PromptConfig, kernel: str = "autocast",
) -> np.ndarray:
    """Predicted label index for every example of `split` (`kernel`: `kernels.EVAL_KERNEL`)."""
    predictions = np.zeros(len(split), dtype=np.int64)
    pad = backbone.tokenizer.pad_token_id
    with evaluation(backbone, config, kernel) as encoder:
        for index in split.length_sorted_batches(config.eval_batch_size):
            output = prompted_forward(backbone, prompt, split.batch(index, pad), encoder)
            predictions[index] = verbalizer.logits(output).argmax(-1).cpu().numpy()
    return predictions


@torch.no_grad()
def predict_many(
    backbone: Backbone, prompts: torch.Tensor, split: EncodedSplit, verbalizer: Verbalizer,
    config: PromptConfig, kernel: str = "autocast",
) -> np.ndarray:
    """Predictions `[len(prompts), len(split)]` of several prompts, evaluated together.

    Each batch of examples is repeated once per prompt and run as one forward pass of
    `len(prompts) * batch` rows (per-example prompts), so the zero-shot transfer matrix needs one
    pass over each target's test set instead of one per source. Same predictions as `predict`.
    `kernel`: `kernels.EVAL_KERNEL`.
    """
    count = prompts.shape[0]
    predictions = np.zeros((count, len(split)), dtype=np.int64)
    pad = backbone.tokenizer.pad_token_id
    per_pass = max(1, config.eval_batch_size // count)
    with evaluation(backbone, config, kernel) as encoder:
        for index in split.length_sorted_batches(per_pass, copies=count):
            batch = split.batch(index, pad)
            tiled = {k: v.repeat(count, 1) for k, v in batch.items()}
            rows = prompts.repeat_interleave(len(index), dim=0)
            logits = verbalizer.logits(prompted_forward(backbone, rows, tiled, encoder))
            predictions[:, index] = logits.argmax(-1).view(count, len(index)).cpu().numpy()
    return predictions


def accuracy(predictions: np.ndarray, labels: torch.Tensor) -> float:
    return float((predictions == labels.numpy()).mean())


def split_accuracy(
    backbone: Backbone, prompt: torch.Tensor, split: EncodedSplit, verbalizer: Verbalizer, config: PromptConfig,
    kernel: str = "autocast",
) -> float:
    """Accuracy of `prompt` on every example of `split`."""
    return accuracy(predict(backbone, prompt, split, verbalizer, config, kernel), split.labels)


def selection_score(
    backbone: Backbone, prompt: torch.Tensor, split: EncodedSplit, verbalizer: Verbalizer, config: PromptConfig,
    kernel: str = "autocast",
) -> float:
    """What dev selection maximises (`config.select_metric`): accuracy, or balanced accuracy
    (scikit-learn's `balanced_accuracy_score`, mean per-class recall over the classes present)."""
    if config.select_metric == "accuracy":
        return split_accuracy(backbone, prompt, split, verbalizer, config, kernel)
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(split.labels.numpy(), predict(backbone, prompt, split, verbalizer, config, kernel)))


@dataclass
class TrainedPrompt:
    prompt: torch.Tensor  # [prompt_length, hidden], float32
    dev_accuracy: float  # the dev score of `config.select_metric` of the kept prompt
    best_step: int
    losses: list[float]


def train_prompt(
    backbone: Backbone, train: EncodedSplit, dev: EncodedSplit | None, verbalizer: Verbalizer,
    config: PromptConfig, seed: int, init: torch.Tensor | None = None, progress=None, attention: str = "sdpa",
    eval_kernel: str = "autocast",
) -> TrainedPrompt:
    """Prompt tuning: AdamW on the prompt alone; keep the prompt with the best dev accuracy
    (evaluated every `eval_every` steps), or the final prompt when `dev` is None.

    Data order and initialisation depend only on `seed`, so the same seed gives the same prompt;
    `init` (a source task's prompt) replaces the default initialisation for transfer by
    initialisation. `attention`: the attention implementation of training steps (`resolve_train_attention`);
    `eval_kernel`: the kernel of dev evaluation (`kernels.EVAL_KERNEL`).
    """
    return train_prompts(backbone, [TrainJob(train, dev, verbalizer, seed, init)], config, progress, attention,
                         eval_kernel)[0]


@dataclass
class TrainJob:
    """One prompt to train in `train_prompts`: the same arguments as `train_prompt`."""

    train: EncodedSplit
    dev: EncodedSplit | None
    verbalizer: Verbalizer
    seed: int
    init: torch.Tensor | None = None


def train_prompts(backbone: Backbone, jobs: Sequence[TrainJob], config: PromptConfig, progress=None,
                  attention: str = "sdpa", eval_kernel: str = "autocast") -> list[TrainedPrompt]:
    """Train several prompts together: one forward/backward pass per step for all of them.

    Each step takes every job's next batch (drawn exactly as `train_prompt` draws it for that job's
    seed), stacks the rows with per-example prompts (as `predict_many` does for evaluation), and
    backpropagates the sum of the jobs' mean losses. A frozen encoder has no operation that mixes
    rows (LayerNorm and attention are per sequence), so each prompt receives the gradient of its own
    loss alone, and AdamW is element-wise: every prompt follows its `train_prompt` trajectory up to
    floating-point differences from the longer padded batch (reduced-precision matmuls round
    differently for other shapes). The same jobs in the same order give the same prompts every time.
    Dev selection is per job, as in `train_prompt`. `train_prompt` is this loop with one job, which
    runs exactly one prompt's computation (no stacking, no per-example prompt copy).
    `attention`: the attention implementation of the training steps (`resolve_train_attention`;
    dev evaluation uses the backbone's own); `eval_kernel`: the kernel of dev evaluation (`kernels.EVAL_KERNEL`).
    """
    kernel = resolve_train_attention(attention, backbone.device, precision_name(backbone.device, config))
    check_eval_kernel(eval_kernel)
    with torch.enable_grad():  # callers may hold a no_grad context (e.g. lazily computed artifacts)
        return _train(backbone, jobs, config, progress, kernel, eval_kernel)


def _train(backbone, jobs, config, progress, kernel: str, eval_kernel: str) -> list[TrainedPrompt]:
    device = backbone.device
    prompts = []
    for job in jobs:
        torch.manual_seed(job.seed)
        start = job.init.clone().float() if job.init is not None else initial_prompt(backbone, config.prompt_length, job.seed)
        prompts.append(start.to(device).requires_grad_(True))
    # one parameter group per prompt: AdamW's update is element-wise, so this equals one optimizer each
    # float16 autocast (GPUs without bfloat16) needs loss scaling; a disabled scaler is a no-op
    optimizer = torch.optim.AdamW([{"params": [p]} for p in prompts], lr=config.lr, weight_decay=0.0)
    scaler = torch.amp.GradScaler(device.type, enabled=config.bf16 and autocast_dtype(device) == torch.float16)
    orders = [torch.Generator().manual_seed(job.seed + 1) for job in jobs]
    permutations: list[list[int]] = [[] for _ in jobs]
    pad = backbone.tokenizer.pad_token_id
    best = [(-1.0, 0, p.detach().clone()) for p in prompts]
    losses: list[list[float]] = [[] for _ in jobs]
    progress_bar.loop_started(config.steps)
    for step in range(1, config.steps + 1):
        batches, indices = [], []
        for j, job in enumerate(jobs):
            if len(permutations[j]) < config.batch_size:
                permutations[j] += torch.randperm(len(job.train), generator=orders[j]).tolist()
            index, permutations[j] = permutations[j][: config.batch_size], permutations[j][config.batch_size :]
            indices.append(index)
            batches.append(job.train.batch(index, pad))
        if len(jobs) == 1:  # one prompt: its own batch, the prompt broadcast by `prompted_forward`
            batch, rows = batches[0], prompts[0]
        else:
            batch = _stack_batches(batches, pad)
            rows = torch.cat([p.unsqueeze(0).expand(len(i), -1, -1) for p, i in zip(prompts, indices)])
        with reduced_precision(backbone, config):
            with forward_precision(backbone, config), training_attention(backbone.encoder, kernel):
                output = prompted_forward(backbone, rows, batch)
            job_losses, start = [], 0
            for job, index in zip(jobs, indices):
                part = slice(start, start + len(index))
                start += len(index)
                logits = job.verbalizer.logits(PromptedOutput(output.hidden[part], output.attention_mask[part], output.mask_hidden[part]))
                job_losses.append(F.cross_entropy(logits.float(), job.train.labels[index].to(device)))
            scaler.scale(job_losses[0] if len(jobs) == 1 else torch.stack(job_losses).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        for j, (job, loss) in enumerate(zip(jobs, job_losses)):
            losses[j].append(loss.item())
            if job.dev is None and step == config.steps:  # no selection: the final prompt
                best[j] = (float("nan"), step, prompts[j].detach().clone())
            elif job.dev is not None and (step % config.eval_every == 0 or step == config.steps):
                dev_acc = selection_score(backbone, prompts[j].detach(), job.dev, job.verbalizer, config, eval_kernel)
                if dev_acc > best[j][0]:
                    best[j] = (dev_acc, step, prompts[j].detach().clone())
        if progress is not None:
            for _ in jobs:  # one tick per prompt-step, as `train_prompt` ticks
                progress()
        progress_bar.batch_done(sum(len(i) for i in indices), train=True)  # one step of every prompt of the pass
    if not all(math.isfinite(x) for job_losses in losses for x in job_losses):
        raise TransferbenchError("prompt training diverged (non-finite loss); lower `lr` in the suite's training block")
    return [TrainedPrompt(prompt=b[2].cpu(), dev_accuracy=b[0], best_step=b[1], losses=l) for b, l in zip(best, losses)]


def _stack_batches(batches: Sequence[dict[str, torch.Tensor]], pad: int) -> dict[str, torch.Tensor]:
    """Concatenate padded batches row-wise, right-padding each to the longest (ids with `pad`,
    attention mask and token types with 0)."""
    width = max(b["input_ids"].shape[1] for b in batches)
    out = {}
    for key in batches[0]:
        fill = pad if key == "input_ids" else 0
        out[key] = torch.cat([F.pad(b[key], (0, width - b[key].shape[1]), value=fill) for b in batches])
    return out


@contextmanager
def capture_ffn(backbone: Backbone, positions: slice | list[int],
                reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """Record each layer's FFN activations (after the activation function) at `positions`.

    Yields a list that receives one `[B, layers, len(positions), ffn]` tensor per forward pass.
    `reduce` (instead of `positions`): maps one layer's activations `[B, L, ffn]`, on the device,
    to the `[B, k, ffn]` recorded, e.g. with the verbalizer's read-out (`read_out`), without
    keeping every position's activations of every layer.
    """
    per_layer: list[torch.Tensor | None] = [None] * backbone.num_layers
    captured: list[torch.Tensor] = []

    def hook(layer: int):
        def record(_module, _inputs, output):
            picked = output[:, positions] if reduce is None else reduce(output)
            per_layer[layer] = picked.detach().float().cpu()
            if layer == backbone.num_layers - 1:
                captured.append(torch.stack(per_layer, dim=1))  # type: ignore[arg-type]

        return record

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(backbone.ffn_modules)]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


__all__ = [
    "PromptConfig", "EncodedSplit", "encode_split", "Verbalizer", "prompted_forward", "predict",
    "accuracy", "split_accuracy", "selection_score", "TrainedPrompt", "train_prompt", "TrainJob", "train_prompts",
    "capture_ffn", "initial_prompt", "prompted_attention_mask", "read_out", "READ_OUTS",
]
