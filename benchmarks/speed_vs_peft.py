"""Prompt-tuning throughput: transferbench's training loop against a typical PEFT prompt-tuning loop.

Every configuration trains the same soft prompt (same initial prompt, same batches in the same
order, same verbalizer objective) on task `rt_sentiment` of the `default` suite, on the frozen
packaged backbone, and is timed on its training steps only. Intermediate configurations attribute
the speed-up to its three levers: bfloat16 autocast, dynamic padding and, in bfloat16 on a CPU,
transformers' `eager` attention instead of the fused `sdpa` kernel for training steps
(`--train-attention eager`, opt-in; the default is `sdpa`, the kernel the shipped references were
built with); PEFT is also run with `eager`, so the table shows what the attention choice alone
gives a typical loop. A last row compiles transferbench's training forward with torch.compile
(`--train-attention eager-compiled`); its compilation falls in the untimed first step and is
printed.

After training it times one zero-shot row (`predict_many`: 12 prompts on the 400 test examples,
forward only) with each evaluation kernel (`--eval-kernel autocast`, the default, and `compiled`)
and prints both fractions of the measured bf16 matmul peak, training and zero-shot evaluation, the
rate of the encoder's own matrix products at those batch shapes (the ceiling they set), and the
estimated cost of the default suite's reference build from these rates (`api.protocol_work` counts
its examples).

The machine may be shared with other jobs, so the configurations are not run one after another:
each runs in its own thread and they take turns, one training step each (round robin, only one
computes at a time). A load change then hits every configuration alike, and each is timed on the
sum of its own step durations (steps 2 .. N-1; step 1 is the warm-up).

    TRANSFERBENCH_CACHE=/tmp/tbcache_default .venv/bin/python benchmarks/speed_vs_peft.py --json speed.json

Needs the `bench` extra (`pip install -e .[bench]`, i.e. peft).
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from transferbench.api import protocol_work
from transferbench.model.backbone import Backbone, resolve_backbone
from transferbench.model.kernels import EVAL_KERNEL, training_attention
from transferbench.model.prompt import (
    PromptConfig, Verbalizer, accuracy, encode_split, initial_prompt, mean_pool, predict, predict_many, train_prompt,
)
from transferbench.tasks import load_suite, load_task, load_task_data, suite_tasks

TASK = "rt_sentiment"
SUITE = "default"


# ---- machine peak ----------------------------------------------------------------------------------
def matmul_tflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5, device: torch.device | None = None,
                  warmups: int = 1) -> float:
    """Best-of-`repeats` rate of one `size x size` matrix multiply on `device` (default CPU), in
    TFLOP/s (2 n^3 FLOPs); a GPU is synchronised around each timed product."""
    device = device or torch.device("cpu")
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmups):
        torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        torch.matmul(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


# ---- FLOP estimate ---------------------------------------------------------------------------------
def step_flops(shape: tuple[int, int], params: int, layers: int, hidden: int) -> float:
    """FLOPs executed by one forward + backward-to-activations pass of a frozen encoder.

    Per sequence of L positions (padding included: it is computed too):
      4 * params * L            linear layers: forward 2PL, gradient w.r.t. their inputs 2PL
                                (frozen weights: no weight gradients, so not the usual 6PL)
      + 12 * layers * L^2 * H   attention scores and weighted sum: forward 4 L^2 H per layer,
                                backward 8 L^2 H per layer (both operands are activations)
    `params` counts the transformer layers only (no embeddings, no pooler).
    """
    batch, length = shape
    return batch * (4 * params * length + 12 * layers * length**2 * hidden)


def forward_flops(shape: tuple[int, int], params: int, layers: int, hidden: int) -> float:
    """FLOPs of one forward pass (no backward), counted as in `step_flops`: 2 * params * L for the
    linear layers + 4 * layers * L^2 * H for attention, per sequence of L positions."""
    batch, length = shape
    return batch * (2 * params * length + 4 * layers * length**2 * hidden)


# ---- a typical PEFT prompt-tuning loop ---------------------------------------------------------------
def peft_prompt_model(model_dir: str, prompt_length: int, init: torch.Tensor | None, init_mode: str, tokenizer):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from transformers import AutoModel

    base = AutoModel.from_pretrained(model_dir)
    if init_mode == "text":
        config = PromptTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=prompt_length,
            prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text="Classify the sentiment of this review:",
            tokenizer_name_or_path=model_dir,
        )
    else:
        config = PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=prompt_length,
                                    prompt_tuning_init=PromptTuningInit.RANDOM)
    model = get_peft_model(base, config)
    embedding = model.prompt_encoder["default"].embedding
    if init_mode == "same" and init is not None:
        with torch.no_grad():
            embedding.weight.copy_(init)  # start from transferbench's initial prompt: isolates speed
    model.eval()  # no dropout, like transferbench's frozen backbone
    return model, embedding.weight


def peft_logits(model, batch: dict[str, torch.Tensor], verbalizer: Verbalizer, scale: float) -> torch.Tensor:
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    # PEFT prepends the virtual tokens (attended) before [CLS]: pool over all attended positions.
    size = batch["input_ids"].shape[0]
    virtual = out.last_hidden_state.shape[1] - batch["input_ids"].shape[1]
    attention = torch.cat([torch.ones(size, virtual, dtype=batch["attention_mask"].dtype), batch["attention_mask"]], 1)
    pooled = F.normalize(mean_pool(out.last_hidden_state, attention).float(), dim=-1)
    return scale * pooled @ verbalizer.label_encodings.T


def tokenize(tokenizer, texts: list[str], padding: str, max_length: int) -> dict[str, torch.Tensor]:
    return tokenizer(texts, padding=padding, truncation=True, max_length=max_length, return_tensors="pt")


class RoundRobin:
    """Lets several training loops (one thread each) take turns, one step at a time."""

    def __init__(self, count: int):
        self.turn = 0
        self.alive = [True] * count
        self.cond = threading.Condition()

    def wait_turn(self, who: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == who)

    def pass_on(self, who: int) -> None:
        with self.cond:
            nxt = (who + 1) % len(self.alive)
            while not self.alive[nxt] and nxt != who:
                nxt = (nxt + 1) % len(self.alive)
            self.turn = nxt
            self.cond.notify_all()

    def finish(self, who: int) -> None:
        with self.cond:
            self.alive[who] = False
        self.pass_on(who)


@dataclass
class Run:
    name: str
    loop: str
    bf16: bool
    padding: str
    attention: str = "sdpa"  # the attention implementation of training steps (`kernels.training_attention`)
    durations: list[float] = field(default_factory=list)  # seconds of each training step
    shapes: list[tuple[int, int]] = field(default_factory=list)  # (batch, width) of each forward pass
    test_accuracy: float = float("nan")
    final_loss: float = float("nan")
    error: BaseException | None = None
    _start: float = 0.0

    def timed_steps(self) -> slice:
        # Step 1 is the warm-up; transferbench's last step also runs its dev evaluation, so every
        # loop is timed on steps 2 .. N-1 (the same window everywhere).
        return slice(1, len(self.durations) - 1)

    def seconds(self) -> float:
        return sum(self.durations[self.timed_steps()])

    def examples_per_second(self, batch_size: int) -> float:
        return len(self.durations[self.timed_steps()]) * batch_size / self.seconds()


class Turns:
    """The step callback of one loop: time its step, let the others take theirs, start the next."""

    def __init__(self, ring: RoundRobin, who: int, run: Run):
        self.ring, self.who, self.run = ring, who, run

    def begin(self) -> None:
        self.ring.wait_turn(self.who)
        self.run._start = time.perf_counter()

    def step_done(self) -> None:
        self.run.durations.append(time.perf_counter() - self.run._start)
        self.ring.pass_on(self.who)
        self.begin()


def record_shapes(module: torch.nn.Module, runs_by_thread: dict[int, Run]):
    """Record the (batch, width) of every forward pass, for the run of the calling thread."""
    def hook(_module, args, kwargs):
        x = kwargs.get("inputs_embeds")
        if x is None:
            x = kwargs.get("input_ids", args[0] if args else None)
        run = runs_by_thread.get(threading.get_ident())
        if run is not None:
            run.shapes.append(tuple(x.shape[:2]))

    return module.register_forward_pre_hook(hook, with_kwargs=True)


def train_transferbench(run: Run, turns: Turns, backbone, train, test, verbalizer, config, seed) -> None:
    config = replace(config, bf16=run.bf16, eval_every=config.steps + 1)  # dev evaluation only at the last step
    # `dev=test` only feeds the final (untimed) evaluation; the returned prompt is the last one.
    trained = train_prompt(backbone, train, test, verbalizer, config, seed, progress=turns.step_done,
                           attention=run.attention)
    run.shapes = run.shapes[: config.steps]  # the training forwards come first
    run.final_loss = float(np.mean(trained.losses[-10:]))
    run.test_accuracy = accuracy(predict(backbone, trained.prompt, test, verbalizer, config), test.labels)


def train_peft(run: Run, turns: Turns, model, prompt, tokenizer, data, verbalizer, config, seed) -> None:
    optimizer = torch.optim.AdamW([prompt], lr=config.lr, weight_decay=0.0)
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if run.bf16 else nullcontext
    texts = list(data.train["text"])
    labels = torch.tensor(list(data.train["label"]), dtype=torch.long)
    order = torch.Generator().manual_seed(seed + 1)  # the same batches, in the same order, as train_prompt
    permutation: list[int] = []
    losses = []
    for _ in range(config.steps):
        if len(permutation) < config.batch_size:
            permutation += torch.randperm(len(texts), generator=order).tolist()
        index, permutation = permutation[: config.batch_size], permutation[config.batch_size :]
        batch = tokenize(tokenizer, [texts[i] for i in index], run.padding, config.max_length)
        with cast(), training_attention(model.get_base_model(), run.attention):
            logits = peft_logits(model, batch, verbalizer, config.cosine_scale)
        loss = F.cross_entropy(logits.float(), labels[index])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        turns.step_done()
    run.final_loss = float(np.mean(losses[-10:]))
    # Test accuracy with the loop's own padding and precision.
    test_texts, test_labels = list(data.test["text"]), np.asarray(list(data.test["label"]))
    predictions = []
    with torch.no_grad(), cast():
        for start in range(0, len(test_texts), config.eval_batch_size):
            batch = tokenize(tokenizer, test_texts[start : start + config.eval_batch_size], run.padding, config.max_length)
            predictions.append(peft_logits(model, batch, verbalizer, config.cosine_scale).argmax(-1).numpy())
    run.test_accuracy = float((np.concatenate(predictions) == test_labels).mean())


def time_zero_shot(backbone, test, verbalizer, config, count: int, seed: int, runs_by_thread: dict[int, Run],
                   kernel: str = "autocast") -> tuple[Run, np.ndarray, float]:
    """One zero-shot row as the reference build runs it: `count` prompts (a target's sources and the
    null prompt) predicted on the test split in one `predict_many` pass, bf16, evaluation kernel
    `kernel` (`kernels.EVAL_KERNEL`). Timed on a second pass after a warm-up pass (which compiles
    the compiled kernel: its seconds are returned); the encoder's shapes of the timed pass are
    recorded for the FLOP count (the compiled copy runs no hooks, but its batches are the same).
    Returns the run, the timed pass's predictions and the warm-up's seconds."""
    prompts = torch.stack([initial_prompt(backbone, config.prompt_length, seed + k) for k in range(count)])
    run = Run(f"zero-shot row, --eval-kernel {kernel} ({count} prompts x {len(test)} test examples, predict_many)",
              "transferbench", True, "dynamic")
    started = time.perf_counter()
    predict_many(backbone, prompts, test, verbalizer, config, kernel)  # warm-up
    warm_up = time.perf_counter() - started
    runs_by_thread[threading.get_ident()] = run
    started = time.perf_counter()
    predictions = predict_many(backbone, prompts, test, verbalizer, config, kernel)
    run.durations = [time.perf_counter() - started]
    del runs_by_thread[threading.get_ident()]
    return run, predictions, warm_up


def encoder_gemm_tflops(rows: int, hidden: int, ffn: int, repeats: int = 20) -> float:
    """The bf16 rate of one encoder layer's six matrix products (query, key, value, attention output:
    hidden -> hidden; FFN: hidden -> ffn -> hidden) at `rows` = sequences x positions, as
    `F.linear` runs them, in TFLOP/s: the ceiling the encoder's own products set, to read beside
    the 2048^2 peak (best of `repeats` rounds)."""
    x, inner = torch.randn(rows, hidden, dtype=torch.bfloat16), torch.randn(rows, ffn, dtype=torch.bfloat16)
    weights = [(x, torch.randn(hidden, hidden, dtype=torch.bfloat16))] * 4
    weights += [(x, torch.randn(ffn, hidden, dtype=torch.bfloat16)), (inner, torch.randn(hidden, ffn, dtype=torch.bfloat16))]
    flops = sum(2 * rows * w.shape[0] * w.shape[1] for _, w in weights)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for a, w in weights:
            F.linear(a, w)
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e12


def reference_build_estimate(suite, rows: list[dict], evaluation: dict, params: int, layers: int, hidden: int,
                             bf16_peak: float) -> dict:
    """The default suite's reference build from this run's rates: `api.protocol_work` counts its
    training and evaluation examples; minutes at the measured training rate of transferbench's
    bf16 loop plus the zero-shot evaluation rate (`evaluation`: per evaluation kernel) for the
    defaults (sdpa training, autocast evaluation), `eager` training, and the fastest opt-in kernels
    (eager-compiled training, compiled evaluation); and at 100% of the bf16 matmul peak for the
    FLOPs of those examples at the measured mean widths."""
    config = PromptConfig.from_overrides(dict(suite.training))
    tasks = [spec.name for spec in suite_tasks(suite)]
    work = protocol_work(SimpleNamespace(config=config, tasks=tasks, seeds=suite.seeds, suite=suite))
    training = {r["attention"]: r for r in rows if r["loop"] == "transferbench" and r["bf16"]}
    kernels = {"sdpa": ("sdpa", "autocast"), "eager": ("eager", "autocast"), "fastest": ("eager-compiled", "compiled")}
    minutes = {name: (work["train"] / training[attention]["examples_per_second"]
                      + work["eval"] / evaluation[kernel]["examples_per_second"]) / 60
               for name, (attention, kernel) in kernels.items()}
    flops = (work["train"] * step_flops((1, round(training["sdpa"]["mean_sequence_width"])), params, layers, hidden)
             + work["eval"] * forward_flops((1, round(evaluation["autocast"]["mean_sequence_width"])), params, layers,
                                            hidden))
    minutes["bf16_peak"] = flops / (bf16_peak * 1e12) / 60
    return {"prompts": len(tasks) * len(suite.seeds), "train_examples": work["train"], "eval_examples": work["eval"],
            "pflop": flops / 1e15, "minutes": minutes}


def run_interleaved(jobs: list[tuple[Run, callable]], runs_by_thread: dict[int, Run]) -> None:
    """Run every job in its own thread, one training step at a time each, round robin."""
    ring = RoundRobin(len(jobs))

    def worker(who: int, run: Run, job) -> None:
        runs_by_thread[threading.get_ident()] = run
        turns = Turns(ring, who, run)
        try:
            turns.begin()
            job(turns)
        except BaseException as exc:  # re-raised in the main thread
            run.error = exc
        finally:
            ring.finish(who)

    threads = [threading.Thread(target=worker, args=(i, run, job)) for i, (run, job) in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for run, _ in jobs:
        if run.error is not None:
            raise run.error


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peft-init", choices=["same", "random", "text"], default="same",
                        help="PEFT's initial prompt: transferbench's (same, default), PEFT RANDOM, or PEFT TEXT")
    parser.add_argument("--skip-peft-bf16", action="store_true", help="leave out PEFT with bf16 autocast")
    parser.add_argument("--zero-shot-prompts", type=int, default=12,
                        help="prompts per zero-shot pass (12: a target's 11 sources and the null prompt of the default suite)")
    parser.add_argument("--json", metavar="OUT", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    console = Console(width=150)

    config = PromptConfig(steps=args.steps, batch_size=16, prompt_length=16, lr=0.03, max_length=96)
    suite = load_suite(SUITE)
    data = load_task_data(load_task(TASK), suite)
    spec = load_task(TASK)
    backbone = Backbone("minilm")
    model_dir = resolve_backbone("minilm")[0]
    train = encode_split(backbone, data.train, config.max_length)
    test = encode_split(backbone, data.test, config.max_length)
    verbalizer = Verbalizer(backbone, [spec.verbalizers[n] for n in spec.label_names], config.cosine_scale)
    layers = backbone.encoder.encoder.layer
    params = sum(p.numel() for p in layers.parameters())

    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    peak_before = {"bf16": matmul_tflops(torch.bfloat16), "fp32": matmul_tflops(torch.float32)}
    console.print(f"matmul 2048^2 (best of 5): bf16 {peak_before['bf16']:.3f} TFLOP/s, fp32 {peak_before['fp32']:.3f} TFLOP/s")

    tokenizer = backbone.tokenizer
    init = initial_prompt(backbone, config.prompt_length, args.seed)
    runs: list[Run] = []
    jobs = []
    peft_models = []
    peft_variants = [(False, "max_length", "sdpa"), (False, "longest", "sdpa")]
    peft_variants += [] if args.skip_peft_bf16 else [(True, "longest", "sdpa"), (True, "longest", "eager")]
    for bf16, padding, attention in peft_variants:
        torch.manual_seed(args.seed)  # models are built here, in the main thread (PEFT's RANDOM init)
        model, prompt = peft_prompt_model(model_dir, config.prompt_length, init, args.peft_init, tokenizer)
        peft_models.append(model)
        label = "max_length padding" if padding == "max_length" else "dynamic padding"
        kernel = ", eager attention" if attention == "eager" else ""
        run = Run(f"PEFT ({'bf16' if bf16 else 'fp32'}, {label}{kernel})", "peft", bf16, padding, attention)
        jobs.append((run, lambda turns, run=run, model=model, prompt=prompt: train_peft(
            run, turns, model, prompt, tokenizer, data, verbalizer, config, args.seed)))
        runs.append(run)
    for bf16, attention in ((False, "sdpa"), (True, "sdpa"), (True, "eager"), (True, "eager-compiled")):
        kernel = {"sdpa": ", sdpa attention = default", "eager": ", eager attention",
                  "eager-compiled": ", eager attention, torch.compile"}[attention] if bf16 else ""
        run = Run(f"transferbench ({'bf16' if bf16 else 'fp32'}, dynamic padding{kernel})", "transferbench", bf16,
                  "dynamic", attention)
        jobs.append((run, lambda turns, run=run: train_transferbench(
            run, turns, backbone, train, test, verbalizer, config, args.seed)))
        runs.append(run)
    runs_by_thread: dict[int, Run] = {}
    handles = [record_shapes(backbone.encoder, runs_by_thread)]
    handles += [record_shapes(model.base_model, runs_by_thread) for model in peft_models]
    console.print(f"training {len(jobs)} configurations side by side, one step each in turn ({args.steps} steps) ...")
    started = time.perf_counter()
    try:
        run_interleaved(jobs, runs_by_thread)
        console.print(f"done in {time.perf_counter() - started:.0f} s")
        console.print(f"zero-shot evaluation: {args.zero_shot_prompts} prompts x {len(test)} test examples, "
                      f"each evaluation kernel ...")
        zero_shot = {kernel: time_zero_shot(backbone, test, verbalizer, replace(config, bf16=True),
                                            args.zero_shot_prompts, args.seed, runs_by_thread, kernel)
                     for kernel in EVAL_KERNEL}
    finally:
        for handle in handles:
            handle.remove()
    peak_after = {"bf16": matmul_tflops(torch.bfloat16), "fp32": matmul_tflops(torch.float32)}
    console.print(f"matmul again after training: bf16 {peak_after['bf16']:.3f} TFLOP/s, fp32 {peak_after['fp32']:.3f} TFLOP/s")
    peak = {k: max(peak_before[k], peak_after[k]) for k in peak_before}

    baseline = runs[0].examples_per_second(config.batch_size)

    def same_settings_peft(run: Run, attention: str = "sdpa") -> Run | None:
        """The PEFT run with `run`'s precision and padding (the fair comparison for the headline),
        with the backbone's own (sdpa) attention, as a typical loop runs it, unless `attention` says otherwise."""
        padding = "longest" if run.padding == "dynamic" else run.padding
        return next((r for r in runs if r.loop == "peft" and r.bf16 == run.bf16 and r.padding == padding
                     and r.attention == attention), None)
    hidden, n_layers = backbone.hidden_size, backbone.num_layers
    table = Table(title=f"Prompt tuning on {TASK} ({len(train)} train / {len(test)} test), {args.steps} steps, batch {config.batch_size}")
    for column in ("configuration", "ex/s", "vs PEFT", "vs PEFT same settings", "mean width", "GFLOP/s", "% of bf16 peak", "% of own peak",
                   "test acc", "final loss"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    rows = []
    for run in runs:
        timed = run.timed_steps()
        flops = sum(step_flops(s, params, n_layers, hidden) for s in run.shapes[timed])
        rate = flops / run.seconds()
        eps = run.examples_per_second(config.batch_size)
        own = peak["bf16" if run.bf16 else "fp32"]
        fair = same_settings_peft(run)
        row = {
            "configuration": run.name, "loop": run.loop, "bf16": run.bf16, "padding": run.padding,
            "attention": run.attention,
            "examples_per_second": eps, "ratio_vs_peft": eps / baseline,
            "ratio_vs_peft_same_settings": eps / fair.examples_per_second(config.batch_size) if fair else None,
            "ratio_vs_peft_same_settings_and_kernel": (eps / same_kernel.examples_per_second(config.batch_size)
                                                       if (same_kernel := same_settings_peft(run, run.attention)) else None),
            "mean_sequence_width": float(np.mean([s[1] for s in run.shapes[timed]])),
            "gflops_per_second": rate / 1e9, "fraction_of_bf16_peak": rate / (peak["bf16"] * 1e12),
            "fraction_of_own_peak": rate / (own * 1e12), "test_accuracy": run.test_accuracy,
            "final_loss": run.final_loss, "timed_steps": len(run.durations[run.timed_steps()]), "timed_seconds": run.seconds(),
            "first_step_seconds": run.durations[0],
        }
        rows.append(row)
        same = row["ratio_vs_peft_same_settings"]
        table.add_row(run.name, f"{eps:.1f}", f"{row['ratio_vs_peft']:.2f}x", "-" if same is None else f"{same:.2f}x",
                      f"{row['mean_sequence_width']:.1f}",
                      f"{row['gflops_per_second']:.1f}", f"{100 * row['fraction_of_bf16_peak']:.1f}%",
                      f"{100 * row['fraction_of_own_peak']:.1f}%", f"{run.test_accuracy:.3f}", f"{run.final_loss:.3f}")
    console.print(table)
    default = next(r for r in rows if r["loop"] == "transferbench" and r["bf16"] and r["attention"] == "sdpa")
    eager = next(r for r in rows if r["loop"] == "transferbench" and r["bf16"] and r["attention"] == "eager")
    if default["ratio_vs_peft_same_settings"] is not None and eager["ratio_vs_peft_same_settings"] is not None:
        console.print(f"headline: transferbench's default loop on this CPU (bf16, dynamic padding, sdpa attention) trains "
                      f"{default['ratio_vs_peft_same_settings']:.2f}x the examples/s of PEFT with the same precision and "
                      f"padding, at {100 * default['fraction_of_bf16_peak']:.0f}% of the measured bf16 matmul peak; with "
                      f"--train-attention eager {eager['ratio_vs_peft_same_settings']:.2f}x ("
                      f"{100 * eager['fraction_of_bf16_peak']:.0f}% of peak), "
                      f"{eager['ratio_vs_peft_same_settings_and_kernel']:.2f}x PEFT given the same attention too")
    compiled = next(r for r in rows if r["attention"] == "eager-compiled")
    if compiled["ratio_vs_peft_same_settings"] is not None:
        console.print(f"with --train-attention eager-compiled: {compiled['ratio_vs_peft_same_settings']:.2f}x PEFT with the "
                      f"same precision and padding ({100 * compiled['fraction_of_bf16_peak']:.0f}% of peak), after "
                      f"{compiled['first_step_seconds']:.0f} s of compilation in its first (untimed) step")
    # Zero-shot evaluation: forward passes only, the same batches for every kernel.
    shapes = zero_shot["autocast"][0].shapes
    eval_flops = sum(forward_flops(s, params, n_layers, hidden) for s in shapes)
    eval_width = float(np.average([s[1] for s in shapes], weights=[s[0] for s in shapes]))
    evaluation = {}
    for kernel, (run, predictions, warm_up) in zero_shot.items():
        seconds = run.durations[0]
        evaluation[kernel] = {
            "prompts": args.zero_shot_prompts, "examples": len(test), "seconds": seconds, "warm_up_seconds": warm_up,
            "examples_per_second": args.zero_shot_prompts * len(test) / seconds, "mean_sequence_width": eval_width,
            "gflops_per_second": eval_flops / seconds / 1e9, "fraction_of_bf16_peak": eval_flops / seconds / (peak["bf16"] * 1e12),
            "agreement_with_autocast": float(np.mean(predictions == zero_shot["autocast"][1])),
        }
        console.print(f"{run.name}: {evaluation[kernel]['examples_per_second']:.0f} examples/s, mean width {eval_width:.1f}, "
                      f"{eval_flops / seconds / 1e9:.1f} GFLOP/s = {100 * evaluation[kernel]['fraction_of_bf16_peak']:.1f}% "
                      f"of the measured bf16 matmul peak; warm-up pass {warm_up:.0f} s; same prediction as autocast on "
                      f"{100 * evaluation[kernel]['agreement_with_autocast']:.2f}% of the examples")
    train_rows = round(config.batch_size * default["mean_sequence_width"])
    eval_rows = round(np.mean([rows * width for rows, width in shapes]))  # positions per zero-shot pass, as run
    ceiling = {"training_rows": train_rows, "evaluation_rows": eval_rows,
               "training_tflops": encoder_gemm_tflops(train_rows, hidden, backbone.ffn_width),
               "evaluation_tflops": encoder_gemm_tflops(eval_rows, hidden, backbone.ffn_width)}
    console.print(f"the encoder's own bf16 matrix products (one layer's six, F.linear) at a training batch's "
                  f"{train_rows} rows: {ceiling['training_tflops']:.2f} TFLOP/s "
                  f"({100 * ceiling['training_tflops'] / peak['bf16']:.0f}% of the 2048^2 peak); at a zero-shot pass's "
                  f"{eval_rows} rows: {ceiling['evaluation_tflops']:.2f} TFLOP/s "
                  f"({100 * ceiling['evaluation_tflops'] / peak['bf16']:.0f}%)")
    estimate = reference_build_estimate(suite, rows, evaluation, params, n_layers, hidden, peak["bf16"])
    console.print(f"default reference build ({estimate['prompts']} prompts; protocol_work: {estimate['train_examples']:,} "
                  f"training and {estimate['eval_examples']:,} evaluation examples = {estimate['pflop']:.2f} PFLOP at the "
                  f"widths above): {estimate['minutes']['sdpa']:.0f} min at this run's default rates (sdpa training, "
                  f"autocast evaluation), {estimate['minutes']['eager']:.0f} min with --train-attention eager, "
                  f"{estimate['minutes']['fastest']:.0f} min with --train-attention eager-compiled --eval-kernel compiled, "
                  f"{estimate['minutes']['bf16_peak']:.0f} min at 100% of the bf16 matmul peak (one process using every core)")
    console.print(
        "FLOPs per timed step = sum over sequences of 4*P*L + 12*layers*L^2*H (P = transformer-layer parameters "
        f"= {params / 1e6:.2f}M, layers = {n_layers}, H = {hidden}, L = padded width incl. prompt); "
        "peak = best 2048x2048 matmul rate of the run."
    )
    result = {
        "task": TASK, "suite": SUITE, "steps": args.steps, "batch_size": config.batch_size,
        "prompt_length": config.prompt_length, "max_length": config.max_length, "seed": args.seed,
        "peft_init": args.peft_init, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "matmul_tflops_before": peak_before, "matmul_tflops_after": peak_after,
        "transformer_layer_params": params, "runs": rows, "zero_shot_evaluation": evaluation,
        "encoder_gemm_ceiling": ceiling,
        "reference_build_estimate": estimate, "date": time.strftime("%Y-%m-%d"),
    }
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return result


if __name__ == "__main__":
    main()
