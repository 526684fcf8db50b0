"""The benchmark runner: drives tasks -> prompts -> artifacts -> indicator scores in order.

Every unit of work (train a prompt, measure one transfer pair, extract one task's activations) is a
function of its inputs whose output goes through the content-addressed `ArtifactStore`, so a
second run, or a run of another indicator on the same suite, recomputes nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from functools import cached_property
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from transferbench.backbone import Backbone
from transferbench.errors import TransferbenchError
from transferbench.indicator import ARTIFACTS, DEFAULT_TIME_LIMIT, Indicator, TaskView, checked_score
from transferbench.neurons import predictivity
from transferbench.prompt import (
    PROMPT_CODE_VERSION, EncodedSplit, PromptConfig, Verbalizer, accuracy, capture_ffn,
    encode_split, predict, predict_many, prompted_forward, train_prompt, autocast, mean_pool,
)
from transferbench.store import ArtifactStore
from transferbench.task import SuiteSpec, TaskData, TaskSpec, load_task_data

# Bump when a change below changes what an activation artifact would be.
ARTIFACT_CODE_VERSION = 1
SAMPLE_COUNT = 32
# Settings that only affect measured transfer, so changing them never retrains source prompts.
TRANSFER_ONLY_SETTINGS = ("init_steps",)


class Benchmark:
    """One suite on one backbone with fixed seeds; computes (or loads) every artifact it is asked for."""

    def __init__(self, suite: SuiteSpec, backbone: str, seeds: list[int],
                 store: ArtifactStore | None = None, console: Console | None = None):
        if not seeds:
            raise TransferbenchError("at least one seed is needed (e.g. --seeds 0)")
        self.suite = suite
        self.backbone_name = backbone
        self.seeds = list(seeds)
        self.store = store or ArtifactStore()
        self.console = console or Console(stderr=True)
        self.config = PromptConfig.from_overrides(dict(suite.training))
        self.tasks: dict[str, TaskSpec] = {spec.name: spec for spec in suite.task_specs()}
        self._data: dict[str, TaskData] = {}
        self._encoded: dict[tuple[str, str], EncodedSplit] = {}
        self._verbalizers: dict[str, Verbalizer] = {}
        self._memo: dict[tuple, Any] = {}
        self._progress: Progress | None = None
        torch.set_num_threads(max(1, torch.get_num_threads()))

    # ---- stage 1: data -------------------------------------------------------------------------
    def data(self, task: str) -> TaskData:
        if task not in self._data:
            self._data[task] = load_task_data(self.tasks[task], self.suite)
        return self._data[task]

    @cached_property
    def backbone(self) -> Backbone:
        return Backbone(self.backbone_name)

    def encoded(self, task: str, split: str) -> EncodedSplit:
        if (task, split) not in self._encoded:
            dataset = getattr(self.data(task), split)
            self._encoded[task, split] = encode_split(self.backbone, dataset, self.config.max_length)
        return self._encoded[task, split]

    def verbalizer(self, task: str) -> Verbalizer:
        if task not in self._verbalizers:
            spec = self.tasks[task]
            words = [spec.verbalizers[label] for label in spec.label_names]
            self._verbalizers[task] = Verbalizer(self.backbone, words, self.config.cosine_scale)
        return self._verbalizers[task]

    # ---- stage 2: prompts ----------------------------------------------------------------------
    def backbone_identity(self) -> dict[str, str]:
        # Resolving the identity of a packaged alias needs no model load.
        from transferbench.backbone import resolve_backbone

        if "backbone_identity" not in self._memo:
            self._memo["backbone_identity"] = {"backbone": self.backbone_name,
                                               "revision": resolve_backbone(self.backbone_name)[1]}
        return self._memo["backbone_identity"]

    def task_identity(self, task: str) -> dict[str, Any]:
        spec = self.tasks[task]
        return {"task": task, "version": spec.version, "data_hash": self.data(task).data_hash}

    def prompt_inputs(self, task: str, seed: int) -> dict[str, Any]:
        config = {k: v for k, v in self.config.to_dict().items() if k not in TRANSFER_ONLY_SETTINGS}
        return {**self.backbone_identity(), **self.task_identity(task), "config": config,
                "seed": seed, "code": PROMPT_CODE_VERSION}

    def source_prompt(self, task: str, seed: int) -> dict[str, Any]:
        """{"prompt", "dev_accuracy", "test_accuracy", "best_step", "losses"} for a task's own prompt."""
        def compute() -> dict[str, Any]:
            trained = train_prompt(self.backbone, self.encoded(task, "train"), self.encoded(task, "dev"),
                                   self.verbalizer(task), self.config, seed,
                                   progress=self._advance(f"train {task} (seed {seed})", self.config.steps))
            test_acc = accuracy(predict(self.backbone, trained.prompt, self.encoded(task, "test"),
                                        self.verbalizer(task), self.config), self.encoded(task, "test").labels)
            return {"prompt": trained.prompt, "dev_accuracy": trained.dev_accuracy, "test_accuracy": test_acc,
                    "best_step": trained.best_step, "losses": torch.tensor(trained.losses)}

        return self._cached("prompts", self.prompt_inputs(task, seed), compute)

    # ---- stage 3: measured transfer ------------------------------------------------------------
    def zero_shot_row(self, target: str, seed: int) -> dict[str, float]:
        """Test accuracy on `target` of every other task's prompt, with the target's verbalizer.

        Missing pairs are computed together in one batched pass (`predict_many`); each pair is
        stored as its own artifact, so an interrupted row resumes where it stopped.
        """
        sources = [s for s in self.tasks if s != target]
        keys = {s: self.store.key("transfer", {"source": self.prompt_inputs(s, seed),
                                              "target": self.task_identity(target), "kind": "zero_shot"})
                for s in sources}
        found = {s: self.store.load("transfer", keys[s]) for s in sources}
        missing = [s for s in sources if found[s] is None]
        if missing:
            prompts = torch.stack([self.source_prompt(s, seed)["prompt"] for s in missing])
            test = self.encoded(target, "test")
            predictions = predict_many(self.backbone, prompts, test, self.verbalizer(target), self.config)
            for s, row in zip(missing, predictions):
                found[s] = {"accuracy": torch.tensor(accuracy(row, test.labels))}
                self.store.save("transfer", keys[s], found[s])
        return {s: float(found[s]["accuracy"]) for s in sources}

    def zero_shot_transfer(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Relative performance (Su et al. 2022) per ordered pair, mean and std over seeds.

        `relative[s, t] = acc(prompt_s on t) / acc(prompt_t on t)`, both on t's test split with t's
        verbalizer; the diagonal is NaN.
        """
        def cell(source: str, target: str, seed: int, row: dict[str, float]) -> float:
            return row[source] / self.source_prompt(target, seed)["test_accuracy"]

        return self._transfer_matrix("zero-shot transfer", self.zero_shot_row, cell)

    def init_accuracy(self, source: str | None, target: str, seed: int) -> float:
        """Test accuracy on `target` after `init_steps` of prompt tuning from `source`'s prompt
        (or, with `source=None`, from the default initialisation), same seed and data order."""
        steps = self.config.init_steps
        inputs = {"source": self.prompt_inputs(source, seed) if source else None,
                  "target": self.prompt_inputs(target, seed), "kind": "init", "steps": steps}

        def compute() -> dict[str, Any]:
            init = self.source_prompt(source, seed)["prompt"] if source else None
            budget = replace(self.config, steps=steps, eval_every=steps)  # no early stopping: the final prompt
            trained = train_prompt(self.backbone, self.encoded(target, "train"), self.encoded(target, "dev"),
                                   self.verbalizer(target), budget, seed, init=init)
            test = self.encoded(target, "test")
            return {"accuracy": torch.tensor(accuracy(
                predict(self.backbone, trained.prompt, test, self.verbalizer(target), budget), test.labels))}

        return float(self._cached("transfer", inputs, compute)["accuracy"])

    def init_gain_row(self, target: str, seed: int) -> dict[str | None, float]:
        return {s: self.init_accuracy(s, target, seed) for s in [None, *self.tasks] if s != target}

    def init_gain_transfer(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Initialisation gain per ordered pair, mean and std over seeds.

        `gain[s, t] = acc(t's prompt trained init_steps from s's prompt) - acc(same budget from
        the default initialisation)`, same seed and data order, on t's test split.
        """
        def cell(source: str, target: str, seed: int, row: dict) -> float:
            return row[source] - row[None]

        return self._transfer_matrix("initialisation transfer", self.init_gain_row, cell)

    def _transfer_matrix(self, description: str, row_of, cell) -> tuple[pd.DataFrame, pd.DataFrame]:
        names = list(self.tasks)
        per_seed = np.full((len(self.seeds), len(names), len(names)), np.nan)
        with self._step(description, len(names) * len(self.seeds)) as advance:
            for k, seed in enumerate(self.seeds):
                for j, target in enumerate(names):
                    row = row_of(target, seed)
                    for i, source in enumerate(names):
                        if source != target:
                            per_seed[k, i, j] = cell(source, target, seed, row)
                    advance()
        mean = pd.DataFrame(per_seed.mean(0), index=names, columns=names)
        spread = pd.DataFrame(per_seed.std(0), index=names, columns=names)
        return mean, spread

    def transfer(self, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Measured transfer of `kind` ("zero_shot" or "init_gain"): (mean, std over seeds)."""
        if kind == "zero_shot":
            return self.zero_shot_transfer()
        if kind == "init_gain":
            return self.init_gain_transfer()
        raise TransferbenchError(f"unknown transfer kind {kind!r}; use zero_shot or init_gain")

    # ---- stage 3: artifacts for indicators -----------------------------------------------------
    def artifact(self, task: str, name: str) -> Any:
        """The artifact `name` (see `transferbench.indicator.ARTIFACTS`) of `task`."""
        key = (task, name)
        if key not in self._memo:
            self._memo[key] = self._compute_artifact(task, name)
        return self._memo[key]

    def _compute_artifact(self, task: str, name: str) -> Any:
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

    def skill_neurons(self, task: str, seed: int) -> dict[str, torch.Tensor]:
        """Skill-neuron thresholds and scores of a task's own prompt (`transferbench.neurons`).

        Activations at the prompt positions on the dev split (never on the prompt's training data):
        thresholds from the even-indexed dev examples, accuracy on the odd-indexed ones (disjoint).
        """
        inputs = {"prompt": self.prompt_inputs(task, seed), "artifact": "skill_neurons",
                  "code": ARTIFACT_CODE_VERSION}

        def compute() -> dict[str, torch.Tensor]:
            acts = self.prompt_position_activations(task, seed, "dev")
            labels = self.encoded(task, "dev").labels
            threshold_half, accuracy_half = slice(0, None, 2), slice(1, None, 2)
            scores = predictivity(acts[threshold_half], acts[accuracy_half], labels[accuracy_half])
            return {"scores": torch.from_numpy(scores), "thresholds": acts[threshold_half].mean(0)}

        return self._cached("skill_neurons", inputs, compute)

    @torch.no_grad()
    def prompt_position_activations(self, task: str, seed: int, split: str) -> torch.Tensor:
        """FFN activations `[examples, layers, prompt_length, ffn]` at the prompt positions."""
        prompt = self.source_prompt(task, seed)["prompt"]
        encoded = self.encoded(task, split)
        out = torch.zeros(len(encoded), self.backbone.num_layers, prompt.shape[0], self.backbone.ffn_width)
        pad = self.backbone.tokenizer.pad_token_id
        positions = slice(1, 1 + prompt.shape[0])
        with capture_ffn(self.backbone, positions) as captured, autocast(self.config):
            for index in encoded.length_sorted_batches(self.config.eval_batch_size):
                prompted_forward(self.backbone, prompt, encoded.batch(index, pad))
                out[index] = captured.pop()
        return out

    @torch.no_grad()
    def mask_activations(self, task: str, seed: int, with_inputs: bool) -> np.ndarray:
        """FFN activations `[layers, ffn]` at the [MASK] position: of the prompt alone (Su et al.),
        or averaged over the task's dev inputs."""
        inputs = {"prompt": self.prompt_inputs(task, seed), "artifact": "mask_activations",
                  "with_inputs": with_inputs, "code": ARTIFACT_CODE_VERSION}

        def compute() -> dict[str, torch.Tensor]:
            prompt = self.source_prompt(task, seed)["prompt"]
            tokenizer = self.backbone.tokenizer
            position = [1 + prompt.shape[0]]
            with capture_ffn(self.backbone, position) as captured, autocast(self.config):
                if not with_inputs:
                    ids = torch.tensor([[tokenizer.cls_token_id, tokenizer.sep_token_id]])
                    prompted_forward(self.backbone, prompt, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                                             "token_type_ids": torch.zeros_like(ids)})
                    return {"activations": captured[0][0, :, 0]}
                encoded = self.encoded(task, "dev")
                total = torch.zeros(self.backbone.num_layers, self.backbone.ffn_width)
                for index in encoded.length_sorted_batches(self.config.eval_batch_size):
                    prompted_forward(self.backbone, prompt, encoded.batch(index, tokenizer.pad_token_id))
                    total += captured.pop()[:, :, 0].sum(0)
                return {"activations": total / len(encoded)}

        return self._cached("activations", inputs, compute)["activations"].numpy()

    @torch.no_grad()
    def text_embedding(self, task: str) -> np.ndarray:
        """Mean over training inputs of the frozen backbone's mean-pooled output, without a prompt."""
        inputs = {**self.backbone_identity(), **self.task_identity(task), "artifact": "text_embedding",
                  "max_length": self.config.max_length, "code": ARTIFACT_CODE_VERSION}

        def compute() -> dict[str, torch.Tensor]:
            encoded = self.encoded(task, "train")
            pad = self.backbone.tokenizer.pad_token_id
            total = torch.zeros(self.backbone.hidden_size)
            with autocast(self.config):
                for index in encoded.length_sorted_batches(self.config.eval_batch_size):
                    batch = encoded.batch(index, pad)
                    kwargs = {k: v for k, v in batch.items() if k in self.backbone.tokenizer.model_input_names}
                    hidden = self.backbone.encoder(**kwargs).last_hidden_state
                    total += mean_pool(hidden, batch["attention_mask"]).float().sum(0)
            return {"embedding": total / len(encoded)}

        return self._cached("text_embedding", inputs, compute)["embedding"].numpy()

    # ---- stage 4: indicator scores -------------------------------------------------------------
    def indicator_scores(self, indicator: Indicator) -> pd.DataFrame:
        """The indicator's score for every ordered pair of distinct tasks (NaN on the diagonal)."""
        declared = frozenset(indicator.requires)
        views = {name: TaskView(name, spec.family, spec.num_classes, declared, self.artifact)
                 for name, spec in self.tasks.items()}
        names = list(self.tasks)
        for name in names:  # compute declared artifacts up front, with progress
            with self._step(f"artifacts for {name}", len(declared)) as advance:
                for artifact in sorted(declared):
                    self.artifact(name, artifact)
                    advance()
        scores = pd.DataFrame(np.nan, index=names, columns=names)
        for s in names:
            for t in names:
                if s != t:
                    scores.loc[s, t] = checked_score(indicator, views[s], views[t], time_limit=DEFAULT_TIME_LIMIT)
        return scores

    def task_report(self) -> pd.DataFrame:
        """Each task's own-prompt accuracy (mean over seeds) next to its majority-class baseline."""
        rows = []
        for name, spec in self.tasks.items():
            own = [self.source_prompt(name, seed) for seed in self.seeds]
            rows.append({
                "task": name, "family": spec.family, "classes": spec.num_classes,
                "test_accuracy": float(np.mean([o["test_accuracy"] for o in own])),
                "test_accuracy_std": float(np.std([o["test_accuracy"] for o in own])),
                "dev_accuracy": float(np.mean([o["dev_accuracy"] for o in own])),
                "majority_accuracy": self.data(name).majority_accuracy(),
            })
        return pd.DataFrame(rows)

    def train_all(self) -> None:
        """Train (or load) every task's prompt for every seed."""
        for seed in self.seeds:
            for name in self.tasks:
                self.source_prompt(name, seed)

    # ---- plumbing ------------------------------------------------------------------------------
    def _cached(self, stage: str, inputs: dict[str, Any], compute) -> dict[str, Any]:
        return self.store.get_or_compute(stage, inputs, compute)

    @contextlib.contextmanager
    def progress(self) -> Iterator[Progress]:
        """Show rich progress bars for every long step run inside this block."""
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            self._progress = progress
            try:
                yield progress
            finally:
                self._progress = None

    def _advance(self, description: str, total: int):
        if self._progress is None:
            return None
        task_id = self._progress.add_task(description, total=total)
        return lambda: self._progress.advance(task_id)

    @contextlib.contextmanager
    def _step(self, description: str, total: int):
        advance = self._advance(description, total) or (lambda: None)
        yield advance
