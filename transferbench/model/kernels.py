"""How forward and backward passes on the frozen backbone compute: the precision policy (autocast
in the device's reduced precision) and the kernel policy (training attention, evaluation kernel,
and what `auto` picks per device and precision, from measured figures).

Stage 2 (the model), beside the training loop in `transferbench.model.prompt`, which runs its passes
under these; which precision a run uses at all is `transferbench.model.precision`'s choice.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Protocol

import torch
from torch import nn

from transferbench.errors import TransferbenchError
from transferbench.model.backbone import Backbone


class PrecisionSetting(Protocol):
    """What the policy reads of a `prompt.PromptConfig`: whether reduced precision is on."""

    bf16: bool


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The device's reduced precision when `config.bf16` is on: bfloat16 on CPUs and on GPUs that
    support it, else float16 (which needs a gradient scaler). Whether a run uses it at all is
    `transferbench.model.precision`'s choice (on a CPU without bf16 instructions it runs fp32)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16


def precision_name(device: torch.device, config: PrecisionSetting) -> str:
    """bf16, fp16 or fp32: what forward passes under `config` compute in on `device`."""
    if not config.bf16:
        return "fp32"
    return "fp16" if autocast_dtype(device) == torch.float16 else "bf16"


@contextmanager
def reduced_precision(backbone: Backbone, config: PrecisionSetting) -> Iterator[None]:
    """The precision policy of every forward pass (and its backward pass) on `backbone`.

    With `config.bf16` on: autocast in the device's best reduced precision (`autocast_dtype`),
    with the frozen linear weights held in that precision for the block
    (`Backbone.linears_in`: bit-identical to autocast's own per-pass casts, without their cost).
    Off: float32, nothing changed. Autocast covers the forward pass only (PyTorch's advice:
    backward ops run in the precision their forward ops chose); call `backward` after leaving
    `forward_precision` but inside this block.
    """
    if not config.bf16:
        yield
        return
    with backbone.linears_in(autocast_dtype(backbone.device)):
        yield


def forward_precision(backbone: Backbone, config: PrecisionSetting):
    """Autocast for forward passes inside `reduced_precision` (a no-op when `config.bf16` is off)."""
    if config.bf16:
        return torch.autocast(backbone.device.type, dtype=autocast_dtype(backbone.device))
    return nullcontext()


# The attention implementation of training steps (`--train-attention`), in transformers' terms,
# plus `eager-compiled`: eager attention with the encoder's training forward compiled by
# `torch.compile`. Evaluation always uses the backbone's own attention (`sdpa`: its fused forward
# pass is the faster one), compiled or not as `--eval-kernel` says (`EVAL_KERNEL`).
TRAIN_ATTENTION = ("auto", "sdpa", "eager", "eager-compiled")

# What `auto` picks for (device type, precision): (training attention, evaluation kernel), the
# fastest of the uncompiled kernels measured by `benchmarks/precision_kernels.py` (figures in
# benchmarks/README.md, "Precision by hardware"). Compiled kernels are never picked: their 20-50 s
# of compilation per process outweigh their 1.2-1.3x in all but long builds, and they round
# differently again. Kernels round differently, so a kernel keys what it computes; where a shipped
# reference was built with other kernels, scoring reads its prompts as they are (nothing retrains).
AUTO_KERNELS: dict[tuple[str, str], tuple[str, str]] = {
    # bf16 on a CPU: eager trains 1.82x sdpa on an AMX Xeon and 1.16x on an AVX512-BF16 EPYC (the
    # fused kernel's bf16 backward pass is the slow op)
    ("cpu", "bf16"): ("eager", "autocast"),
    # fp32 on a CPU (what CPUs without bf16 instructions run): sdpa trains 1.03x eager on the EPYC,
    # 1.12x with it capped to AVX2
    ("cpu", "fp32"): ("sdpa", "autocast"),
}
# any other (device, precision): PyTorch's fused attention, which GPUs run natively
AUTO_KERNELS_ELSEWHERE = ("sdpa", "autocast")


def auto_kernels(device: torch.device, precision: str) -> tuple[str, str]:
    """(training attention, evaluation kernel) that `auto` means on `device` at `precision`."""
    return AUTO_KERNELS.get((device.type, precision), AUTO_KERNELS_ELSEWHERE)


def resolve_train_attention(choice: str, device: torch.device, precision: str) -> str:
    """`sdpa` (PyTorch's fused scaled-dot-product kernel, flash attention on a CPU), `eager`
    (transformers' matmul, softmax, matmul) or `eager-compiled` (eager, the training forward
    compiled by torch.compile, `training_attention`); `auto` (the default) is `auto_kernels`' choice
    for the device and `precision` (bf16, fp16 or fp32: `transferbench.model.precision`). They round
    differently, so the choice keys every trained prompt (`Benchmark.device_key`); the shipped
    references were trained with `sdpa`."""
    if choice not in TRAIN_ATTENTION:
        raise TransferbenchError(f"--train-attention must be one of {', '.join(TRAIN_ATTENTION)}, not {choice!r}")
    if choice == "auto":
        return auto_kernels(device, precision)[0]
    return choice


# One compiled forward per encoder class (`torch.compile` of the unbound method, the module passed
# as its first argument: Dynamo guards on it, so another instance compiles a graph of its own).
_COMPILED_FORWARDS: dict[type, Callable] = {}


@contextmanager
def training_attention(model: torch.nn.Module, kernel: str) -> Iterator[None]:
    """For `kernel` "eager" (a resolved `resolve_train_attention` value), the transformers `model`
    runs eager attention in the block's forward passes (their backward passes follow what the
    forward pass ran); for "sdpa", the model's own implementation as loaded (sdpa wherever
    transformers supports it), so a model without sdpa support is never switched to it.

    "eager-compiled": eager attention, and the block's forward passes run the model's forward
    compiled by `torch.compile` (dynamic shapes, TorchInductor; compiled once per process, 36-48 s
    for MiniLM on the 2-core CPU, less with TorchInductor's on-disk cache warm, then 1.2-1.3x
    faster steps than eager, benchmarks/README.md).
    Inductor fuses operations and so rounds differently again; it is a choice of its own.
    """
    previous = model.config._attn_implementation
    switch = kernel != "sdpa" and previous != "eager"
    if switch:
        model.set_attn_implementation("eager")
    if kernel == "eager-compiled":
        cls = type(model)
        if cls not in _COMPILED_FORWARDS:
            _COMPILED_FORWARDS[cls] = torch.compile(cls.forward, dynamic=True)
        model.forward = functools.partial(_COMPILED_FORWARDS[cls], model)
    try:
        yield
    finally:
        if kernel == "eager-compiled":
            del model.forward  # the class's forward again
        if switch:
            model.set_attn_implementation(previous)


@contextmanager
def autocast(config: PrecisionSetting, backbone: Backbone) -> Iterator[None]:
    """Forward passes without a backward pass (evaluation, activation capture):
    `reduced_precision` and `forward_precision` together."""
    with reduced_precision(backbone, config), forward_precision(backbone, config):
        yield


# How evaluation (`predict`, `predict_many`: test predictions, zero-shot rows, dev selection)
# computes its forward passes (`--eval-kernel`):
# - "autocast": the encoder as loaded (float32 weights, its own sdpa attention) under the
#   precision policy of training (`autocast`), uncompiled. The default: the shipped references'.
# - "compiled": a copy of the encoder held wholly in the reduced precision (layer norms, GELU and
#   residual sums too, so no casts between them), compiled by TorchInductor with its weights frozen
#   into the graph (`Backbone.compiled_encoder`). 1.22x the zero-shot rate of "autocast" on the
#   2-core CPU (`benchmarks/speed_vs_peft.py`); it rounds differently (0.35 % of its test predictions
#   differ), so it keys every artifact it evaluates, as `--train-attention` does.
EVAL_KERNEL = ("autocast", "compiled")


def check_eval_kernel(kernel: str) -> str:
    if kernel not in EVAL_KERNEL:
        raise TransferbenchError(f"--eval-kernel must be one of auto, {', '.join(EVAL_KERNEL)}, not {kernel!r}")
    return kernel


def resolve_eval_kernel(choice: str, device: torch.device, precision: str) -> str:
    """An `EVAL_KERNEL` value; `auto` (the default) is `auto_kernels`' choice for the device and precision."""
    return auto_kernels(device, precision)[1] if choice == "auto" else check_eval_kernel(choice)


@contextmanager
def evaluation(backbone: Backbone, config: PrecisionSetting, kernel: str) -> Iterator[nn.Module | None]:
    """The block's evaluation forward passes for `kernel` (`EVAL_KERNEL`): yields the `encoder`
    argument of `prompted_forward` (None: the backbone's own, under `autocast`)."""
    if check_eval_kernel(kernel) == "autocast":
        with autocast(config, backbone):
            yield None
        return
    yield backbone.compiled_encoder(autocast_dtype(backbone.device) if config.bf16 else torch.float32)
