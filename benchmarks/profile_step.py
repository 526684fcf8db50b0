"""The top of a `torch.profiler` profile of prompt training and of zero-shot evaluation.

Profiles `--steps` training steps of `prompt.train_prompt` and one zero-shot pass of
`prompt.predict_many` (`--prompts` prompts on the 400 test examples, as a zero-shot row) on task
`rt_sentiment` of the `default` suite with the suite's settings, each after a warm-up run of the
same work (the same batches, so every kernel is compiled and every oneDNN primitive of these
shapes created before the profile starts), and prints the operators sorted by their own (self)
CPU time, then the rate of the matrix products inside the run (`aten::addmm`, `aten::mm`,
`aten::bmm`: the FLOPs of their recorded shapes over their self time) and their FLOPs over the
run's wall time as a fraction of the bf16 matmul peak (the better of a measurement before and one
after the profiles, as `speed_vs_peft.py` takes it). `--backbone` profiles another backbone
(default `minilm`, the packaged default). `--eval-kernel compiled` profiles
the compiled evaluation kernel instead; `--kernel-names` lists TorchInductor's generated kernels
(the compiled kernels' fused element-wise work) under their own names instead of inside one
`CompiledFxGraph` row. `--attention-only` prints instead what one attention call of a zero-shot
pass costs with each way PyTorch can compute it (the shape of a pass: 60 sequences x 12 heads x
44 positions x 32 dimensions, bf16, with a padding mask).

    TRANSFERBENCH_CACHE=/tmp/tbcache_default python benchmarks/profile_step.py --steps 10 --rows 12
    TRANSFERBENCH_CACHE=/tmp/tbcache_default python benchmarks/profile_step.py --train-attention eager-compiled \
        --eval-kernel compiled --kernel-names [--backbone mpnet-base]
    python benchmarks/profile_step.py --attention-only
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from transferbench.model.backbone import BACKBONES, Backbone, resolve_device
from transferbench.model.kernels import EVAL_KERNEL, TRAIN_ATTENTION
from transferbench.model.prompt import PromptConfig, Verbalizer, encode_split, initial_prompt, predict_many, train_prompt
from transferbench.tasks import load_suite, load_task, load_task_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_vs_peft import matmul_tflops  # noqa: E402

TASK, SUITE = "rt_sentiment", "default"


def attention_variants(batch: int = 60, heads: int = 12, length: int = 44, dim: int = 32, padded: int = 4,
                       repeats: int = 50) -> dict[str, float]:
    """Milliseconds per attention call (mean of `repeats` after a warm-up) at one shape, bf16, the
    last `padded` positions masked as padding, for each way to compute it: PyTorch's fused kernel
    (flash attention on a CPU) with and without the mask, its math backend, transformers' eager
    formulation (matmul, softmax in bf16 or fp32, matmul), fp32 inputs, and torch.compile."""
    q, k, v = (torch.randn(batch, heads, length, dim, dtype=torch.bfloat16) for _ in range(3))
    mask = torch.zeros(batch, 1, length, length, dtype=torch.bfloat16)
    mask[..., length - padded:] = torch.finfo(torch.bfloat16).min

    def unfused(fp32_softmax: bool):
        scores = (q @ k.transpose(-1, -2)) * dim**-0.5
        scores = scores.float() + mask if fp32_softmax else scores + mask
        return scores.softmax(-1).to(v.dtype) @ v

    def math_backend():
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    variants = {
        "sdpa (flash), padding mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        "sdpa (flash), no mask": lambda: F.scaled_dot_product_attention(q, k, v),
        "sdpa, math backend, padding mask": math_backend,
        "eager: matmul, softmax, matmul": lambda: unfused(False),
        "eager, softmax in fp32": lambda: unfused(True),
        "sdpa (flash) on fp32 inputs": lambda: F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                                                  attn_mask=mask.float()),
        "eager, softmax in fp32, torch.compile": torch.compile(lambda: unfused(True)),
    }
    timings = {}
    for name, call in variants.items():
        call()
        started = time.perf_counter()
        for _ in range(repeats):
            call()
        timings[name] = (time.perf_counter() - started) / repeats * 1e3
    return timings


MATRIX_PRODUCTS = ("aten::addmm", "aten::mm", "aten::bmm")


def product_flops(name: str, shapes: list[list[int]]) -> int:
    """FLOPs of one call of a matrix product from its recorded input shapes: `addmm(bias, a, b)`,
    `mm(a, b)` (a: M x K, b: K x N) and `bmm(a, b)` (a: B x M x K) are 2 M K N (times B)."""
    a, b = (shapes[1], shapes[2]) if name == "aten::addmm" else (shapes[0], shapes[1])
    return 2 * math.prod(a) * b[-1]


def product_rate(run: profile) -> tuple[float, float]:
    """(GFLOP, seconds) of the matrix products (`MATRIX_PRODUCTS`) in a profile run with
    `record_shapes=True`: the FLOPs of their recorded shapes over their self time, i.e. the rate
    they reach inside the run, cache and thread effects included (compare
    `speed_vs_peft.encoder_gemm_tflops`: the same products timed alone). Counted here rather than
    with the profiler's `with_flops`, which doubled the time of a compiled zero-shot pass."""
    events = [e for e in run.key_averages(group_by_input_shape=True) if e.key in MATRIX_PRODUCTS]
    flops = sum(e.count * product_flops(e.key, e.input_shapes) for e in events)
    return flops / 1e9, sum(e.self_cpu_time_total for e in events) / 1e6


def print_profile(run: profile, title: str, sort: str, rows: int, wall: float, peak: float) -> None:
    """The table, then the products' rate inside the run and their FLOPs over the run's wall time
    as a fraction of the bf16 matmul `peak` (TFLOP/s): the run's fraction of the peak, counting
    what its products executed (padding included)."""
    averages = run.key_averages()
    print(title)
    print(averages.table(sort_by=sort, row_limit=rows))
    gflop, seconds = product_rate(run)
    total = sum(e.self_cpu_time_total for e in averages) / 1e6
    if seconds:
        print(f"matrix products ({', '.join(MATRIX_PRODUCTS)}): {gflop:.1f} GFLOP in {seconds:.3f} s of "
              f"{total:.3f} s = {gflop / seconds / 1e3:.2f} TFLOP/s inside the run; over the run's wall time "
              f"({wall:.3f} s) {gflop / wall / 1e3:.2f} TFLOP/s = {100 * gflop / wall / 1e3 / peak:.1f} % of the "
              f"bf16 matmul peak ({peak:.2f} TFLOP/s)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="minilm", help=f"a packaged alias ({', '.join(BACKBONES.names())}) or a model folder")
    parser.add_argument("--steps", type=int, default=10, help="training steps profiled")
    parser.add_argument("--prompts", type=int, default=12, help="prompts per zero-shot evaluation pass")
    parser.add_argument("--rows", type=int, default=12, help="operators shown per profile")
    parser.add_argument("--train-attention", default="sdpa", choices=TRAIN_ATTENTION,
                        help="attention kernel of the training steps (as `transferbench run --train-attention`)")
    parser.add_argument("--eval-kernel", default="autocast", choices=EVAL_KERNEL,
                        help="evaluation kernel of the zero-shot pass (as `transferbench run --eval-kernel`)")
    parser.add_argument("--kernel-names", action="store_true",
                        help="name TorchInductor's generated kernels in the profiles (its cpp.enable_kernel_profile)")
    parser.add_argument("--attention-only", action="store_true",
                        help="only time one zero-shot attention call each way (`attention_variants`)")
    args = parser.parse_args()
    if args.attention_only:
        batch, heads, length, dim = 60, 12, 44, 32  # a zero-shot pass: 5 examples x 12 prompts, mean width 44
        flops = 4 * batch * heads * length**2 * dim  # scores and weighted sum, forward
        for name, ms in attention_variants(batch, heads, length, dim).items():
            print(f"{name:40s} {ms:6.2f} ms per call  ({flops / ms / 1e6:5.1f} GFLOP/s)")
        return
    if args.kernel_names:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True
    device = resolve_device(args.device)
    backbone = Backbone(args.backbone, device=device)
    peak_before = matmul_tflops(torch.bfloat16, device=device)
    suite = load_suite(SUITE)
    spec = load_task(TASK)
    data = load_task_data(spec, suite)
    config = PromptConfig.from_overrides({**suite.training, "steps": args.steps})
    train = encode_split(backbone, data.train, config.max_length)
    test = encode_split(backbone, data.test, config.max_length)
    verbalizer = Verbalizer(backbone, [spec.verbalizers[n] for n in spec.label_names], config.cosine_scale)
    prompts = torch.stack([initial_prompt(backbone, config.prompt_length, seed) for seed in range(args.prompts)])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"

    def training():
        train_prompt(backbone, train, None, verbalizer, config, seed=0, attention=args.train_attention)

    def evaluation():
        predict_many(backbone, prompts, test, verbalizer, config, args.eval_kernel)

    runs = []
    for work, title in ((training, f"== training: {args.steps} steps of batch {config.batch_size} on {TASK} "
                                   f"({args.backbone}, {device}, --train-attention {args.train_attention})"),
                        (evaluation, f"== zero-shot evaluation: {args.prompts} prompts x {len(test)} test examples "
                                     f"({args.backbone}, {device}, --eval-kernel {args.eval_kernel})")):
        work()  # the warm-up: the same batches, so the profile sees no compilation or first-shape setup
        with profile(activities=activities, record_shapes=True) as run:
            started = time.perf_counter()
            work()
            wall = time.perf_counter() - started
        runs.append((run, title, wall))
    # the peak as speed_vs_peft.py takes it: the better of a measurement before and one after
    peak = max(peak_before, matmul_tflops(torch.bfloat16, device=device))
    for run, title, wall in runs:
        print_profile(run, title, sort, args.rows, wall, peak)


if __name__ == "__main__":
    main()
