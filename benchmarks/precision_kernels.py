"""Precision by hardware: the rate of each (precision, kernel) on this machine, side by side.

Prints, for the packaged backbone on task `rt_sentiment` of the `default` suite:

1. the rate of a 1024 x 1024 matrix product in fp32 and bf16 (one thread and all threads), and
   what `--precision auto` picks here (`transferbench.model.precision.resolve_precision`);
2. training steps (batch 16, forward + backward to the prompt) for every precision in `--precisions`
   and every training attention kernel (`sdpa`, `eager`), interleaved one step each in a fixed
   rotation, so a load change on a shared machine hits every configuration alike;
3. zero-shot evaluation (`predict_many`: `--prompts` prompts on `--examples` test examples) for
   every precision and evaluation kernel in `--eval-kernels` (`compiled` adds a compilation of
   20-50 s per precision before its timed pass; it is left out by default), interleaved the same way.

Each line's ratio is against fp32 with the default kernels (sdpa training, autocast evaluation).
The rows are what `kernels.AUTO_KERNELS` is read from: `auto` picks, per (device, precision), the
fastest kernel measured here. Emulate a CPU without bf16 instructions on one that has them with
`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`.

    TRANSFERBENCH_CACHE=/tmp/tbcache .venv/bin/python benchmarks/precision_kernels.py --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from transferbench.model.backbone import Backbone, resolve_device
from transferbench.model.kernels import forward_precision, reduced_precision, training_attention
from transferbench.model.precision import cpu_model, resolve_precision
from transferbench.model.prompt import PromptConfig, Verbalizer, encode_split, initial_prompt, predict_many, prompted_forward
from transferbench.tasks import load_suite, load_task, load_task_data

TASK = "rt_sentiment"
SUITE = "default"


def matmul_gflops(dtype: torch.dtype, size: int = 1024, repeats: int = 5) -> float:
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated, of fp32, bf16")
    parser.add_argument("--attentions", default="sdpa,eager", help="training attention kernels to time")
    parser.add_argument("--eval-kernels", default="autocast", help="evaluation kernels to time (autocast, compiled)")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per configuration (+1 warm-up)")
    parser.add_argument("--prompts", type=int, default=12, help="prompts per zero-shot pass")
    parser.add_argument("--examples", type=int, default=128, help="test examples per zero-shot pass")
    parser.add_argument("--passes", type=int, default=2, help="timed zero-shot passes per configuration (+1 warm-up)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    figures: dict = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "capability": torch.backends.cpu.get_cpu_capability(),
                     "auto": resolve_precision("auto", device).record()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    figures["matmul_gflops_1_thread"] = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    torch.set_num_threads(threads)
    figures["matmul_gflops"] = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"CPU {figures['cpu']}, torch {figures['torch']} ({figures['capability']} kernels), {threads} threads")
    print(f"--precision auto here: {resolve_precision('auto', device).phrase()}")
    for key, label in (("matmul_gflops_1_thread", "1 thread"), ("matmul_gflops", f"{threads} threads")):
        rates = figures[key]
        print(f"1024^2 matmul, {label}: fp32 {rates['fp32']:.1f} GFLOP/s, bf16 {rates['bf16']:.1f} GFLOP/s "
              f"(bf16/fp32 {rates['bf16'] / rates['fp32']:.2f}x)")

    backbone = Backbone(args.backbone, device=device)
    suite = load_suite(SUITE)
    spec = load_task(TASK)
    data = load_task_data(spec, suite)
    base = PromptConfig.from_overrides(dict(suite.training))
    train = encode_split(backbone, data.train, base.max_length)
    test = encode_split(backbone, data.test, base.max_length)
    test = replace(test, input_ids=test.input_ids[: args.examples], labels=test.labels[: args.examples],
                   token_type_ids=None if test.token_type_ids is None else test.token_type_ids[: args.examples])
    verbalizer = Verbalizer(backbone, [spec.verbalizers[n] for n in spec.label_names], base.cosine_scale)
    configs = {name: replace(base, bf16=name != "fp32") for name in args.precisions.split(",")}
    pad = backbone.tokenizer.pad_token_id
    generator = torch.Generator().manual_seed(0)
    batches = [train.batch(torch.randperm(len(train), generator=generator)[: base.batch_size].tolist(), pad)
               for _ in range(args.steps + 1)]
    labels = [b["input_ids"].new_zeros(len(b["input_ids"])) for b in batches]

    # ---- training steps, interleaved ---------------------------------------------------------------
    train_runs = list(itertools.product(configs, args.attentions.split(",")))
    prompts = {run: initial_prompt(backbone, base.prompt_length, 0).to(device).requires_grad_(True) for run in train_runs}
    seconds = {run: 0.0 for run in train_runs}
    for step in range(args.steps + 1):
        for run in train_runs:
            precision, attention = run
            config = configs[precision]
            start = time.perf_counter()
            with torch.enable_grad(), reduced_precision(backbone, config):
                with forward_precision(backbone, config), training_attention(backbone.encoder, attention):
                    output = prompted_forward(backbone, prompts[run], batches[step])
                loss = F.cross_entropy(verbalizer.logits(output).float(), labels[step].to(device))
                loss.backward()
            prompts[run].grad = None
            if step:  # step 0 is the warm-up
                seconds[run] += time.perf_counter() - start
    reference = seconds[("fp32", "sdpa")] if ("fp32", "sdpa") in seconds else None
    figures["train_examples_per_second"] = {}
    print(f"\ntraining steps (batch {base.batch_size}, {args.steps} timed each, interleaved)")
    for run in train_runs:
        rate = args.steps * base.batch_size / seconds[run]
        figures["train_examples_per_second"]["/".join(run)] = rate
        ratio = f"  {reference / seconds[run]:.2f}x fp32/sdpa" if reference else ""
        print(f"  {run[0]:5s} {run[1]:15s} {rate:7.1f} examples/s{ratio}")

    # ---- zero-shot evaluation, interleaved ---------------------------------------------------------
    eval_runs = list(itertools.product(configs, args.eval_kernels.split(",")))
    stacked = torch.stack([initial_prompt(backbone, base.prompt_length, seed) for seed in range(args.prompts)]).to(device)
    eval_seconds = {run: 0.0 for run in eval_runs}
    for index in range(args.passes + 1):
        for run in eval_runs:
            start = time.perf_counter()
            predict_many(backbone, stacked, test, verbalizer, configs[run[0]], run[1])
            if index:
                eval_seconds[run] += time.perf_counter() - start
    reference = eval_seconds.get(("fp32", "autocast"))
    figures["eval_examples_per_second"] = {}
    print(f"\nzero-shot passes ({args.prompts} prompts x {len(test)} examples, {args.passes} timed each, interleaved)")
    for run in eval_runs:
        rate = args.passes * args.prompts * len(test) / eval_seconds[run]
        figures["eval_examples_per_second"]["/".join(run)] = rate
        ratio = f"  {reference / eval_seconds[run]:.2f}x fp32/autocast" if reference else ""
        print(f"  {run[0]:5s} {run[1]:15s} {rate:7.1f} prompt-examples/s{ratio}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
