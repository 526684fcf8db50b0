"""What one example costs on this machine: a short timing of the real backbone, once per process,
under the precision and kernels the run will use.

CPUs of one kind of machine differ by orders of magnitude (bfloat16 is native on some, emulated on
others), so no constant rate holds. The opening estimate of a run (`transferbench.api`) multiplies
the examples it will process by these costs, and a stage's ETA (`transferbench.progress`) uses them
before any of its work has finished and to weigh a training example against an evaluation one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

import torch

from transferbench import progress
from transferbench.model.prompt import EncodedSplit, TrainJob, initial_prompt, predict, train_prompts
from transferbench.progress import ExampleCost

# Settings that change what a training run computes but not what one pass costs: left out of the key.
_COST_FREE_SETTINGS = ("steps", "lr", "eval_every", "cosine_scale", "init_steps")

_MEASURED: dict[Any, ExampleCost] = {}  # per (backbone, device, threads, kernels, precision and sizes)


def example_cost(bench) -> ExampleCost:
    """The cost of an example for `bench` (a `transferbench.pipeline.runner.Benchmark`): measured on its
    backbone, device, threads and kernels, under its `config`'s precision, once per process."""
    from transferbench.pipeline import units

    ctx = bench.context
    config = {k: v for k, v in ctx.config.to_dict().items() if k not in _COST_FREE_SETTINGS}
    key = (ctx.backbone, ctx.device, ctx.threads, ctx.train_attention, ctx.eval_kernel, tuple(sorted(config.items())))
    if key not in _MEASURED:
        suite = units.loaded(ctx)  # sets the run's threads
        task = next(iter(bench.tasks))
        devices = [suite.backbone.device] if suite.backbone.device.type == "cuda" else []
        # the timed step seeds the global generator: put it back, so a run computes what it would have
        with progress.paused(), torch.random.fork_rng(devices=devices):
            _MEASURED[key] = measure(suite.backbone, suite.encoded(task, "train"), suite.verbalizer(task), ctx.config,
                                     ctx.train_attention, ctx.eval_kernel)
    return _MEASURED[key]


def measure(backbone, split: EncodedSplit, verbalizer, config, train_attention: str, eval_kernel: str) -> ExampleCost:
    """Time evaluation passes (`predict`: the `evaluation` context of `eval_kernel`) and training
    steps (`train_prompts`: `kernels.reduced_precision`, `forward_precision`, `train_attention`) of
    `backbone` under `config`'s precision, on examples of `split` at the lengths the run pads to:
    an evaluation batch is length-sorted (the split's mean length), a training batch is padded to
    its longest example (the mean longest of `config.batch_size` random examples).

    Each kind runs a warm-up pass of two examples (one-off work: weight copies, kernel selection,
    compilation), then one timed pass at the run's batch size (`eval_batch_size`, `batch_size`):
    a smaller one would overstate the cost, which a pass's fixed overheads dominate at a few
    examples (on the shared 2-core CPU a training step of 1 example cost 7x the per-example time
    of a step of 16)."""
    lengths = torch.tensor([len(ids) for ids in split.input_ids], dtype=torch.float)
    draws = torch.randint(len(lengths), (64, config.batch_size), generator=torch.Generator().manual_seed(0))
    eval_width = max(1, round(lengths.mean().item()))
    train_width = max(1, round(lengths[draws].max(1).values.mean().item()))
    prompt = initial_prompt(backbone, config.prompt_length, 0)

    def evaluate(n: int) -> None:
        predict(backbone, prompt, _examples(split, n, eval_width), verbalizer, replace(config, eval_batch_size=n),
                eval_kernel)

    def step(n: int) -> None:
        job = TrainJob(_examples(split, n, train_width), None, verbalizer, 0)
        train_prompts(backbone, [job], replace(config, steps=1, batch_size=n), attention=train_attention,
                      eval_kernel=eval_kernel)

    return ExampleCost(eval_seconds=_seconds_per_example(evaluate, config.eval_batch_size),
                       train_seconds=_seconds_per_example(step, config.batch_size))


def _seconds_per_example(run: Callable[[int], None], batch: int) -> float:
    # warm-up: what a process does once is not a cost per example. Two examples, not one: a
    # dynamic-shape compilation (`--eval-kernel compiled`, `eager-compiled`) specializes a size of
    # 1 and would compile again for the timed batch.
    run(min(2, batch))
    start = time.perf_counter()
    run(batch)
    return max(time.perf_counter() - start, 1e-9) / batch


def _examples(split: EncodedSplit, n: int, width: int) -> EncodedSplit:
    """`n` examples of `split` (in order, repeated when it has fewer), each `width` tokens long:
    real token ids, cut or repeated to that length (what a pass costs depends on its shape)."""
    def fit(ids: list[int]) -> list[int]:
        return (ids * (width // max(1, len(ids)) + 1))[:width]

    picks = [i % len(split) for i in range(n)]
    types = [fit(split.token_type_ids[i]) for i in picks] if split.token_type_ids is not None else None
    return EncodedSplit([fit(split.input_ids[i]) for i in picks], types, split.labels[picks].clone())
