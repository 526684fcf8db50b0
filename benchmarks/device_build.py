"""A reference build on one device: wall time, estimated FLOPs, fraction of the device's bf16 peak,
and how far its transfer matrices are from the shipped (CPU-built) reference.

    python benchmarks/device_build.py --suite default --device cuda --root /tmp/gpu-ref --json build.json
    python benchmarks/device_build.py --suite default --device cuda --prompts-per-pass 12 --root /tmp/gpu-ref12

It runs `transferbench reference build` in this process with a pre-hook on the backbone that
records the shape of every encoder call (rows x positions, and whether a backward pass follows),
so the FLOP count is of the work the build really did, padding included. FLOPs per call use the
formulas of `speed_vs_peft.py` (`step_flops` for training steps, `forward_flops` otherwise). The
bf16 peak is the best rate of an 8192^3 (GPU) or 2048^3 (CPU) matrix multiply measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_vs_peft import forward_flops, matmul_tflops, step_flops  # noqa: E402

from transferbench.cli import main  # noqa: E402
from transferbench.model import backbone as backbone_module  # noqa: E402
from transferbench.model.backbone import resolve_device  # noqa: E402
from transferbench.reference import bundle as ref  # noqa: E402

CALLS: list[tuple[int, int, bool]] = []  # (rows, positions, backward follows) of every encoder call


def bf16_peak_tflops(device: torch.device) -> float:
    """Best of 10 timed bf16 matrix multiplies (after 3 warm-ups), 8192^3 on a GPU, 2048^3 on a CPU."""
    return matmul_tflops(torch.bfloat16, 8192 if device.type == "cuda" else 2048, repeats=10, device=device, warmups=3)


def _count(args: tuple, kwargs: dict) -> None:
    x = kwargs.get("inputs_embeds")
    if x is None:
        x = kwargs.get("input_ids", args[0] if args else None)
    if x is not None:
        CALLS.append((int(x.shape[0]), int(x.shape[1]), torch.is_grad_enabled() and x.requires_grad))


class _Counted(torch.nn.Module):
    """The compiled evaluation copy (`Backbone.compiled_encoder`, which carries no hooks), its calls counted."""

    def __init__(self, inner: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner, dtype

    def forward(self, **kwargs):
        _count((), kwargs)
        return self.inner(**kwargs)


def _record_calls() -> None:
    original, compiled = backbone_module.Backbone.__init__, backbone_module.Backbone.compiled_encoder

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.model.register_forward_pre_hook(lambda _module, args, kwargs: _count(args, kwargs), with_kwargs=True)

    backbone_module.Backbone.__init__ = init
    backbone_module.Backbone.compiled_encoder = lambda self, dtype: _Counted(compiled(self, dtype), dtype)


def _compare(built: ref.Reference, shipped: ref.Reference) -> dict[str, dict[str, float]]:
    """Per transfer kind: Spearman rho and mean |difference| between the two references' cell means,
    and the share of cells whose difference is within 2 standard errors (the shipped cell's SE)."""
    out = {}
    for kind in built.transfer:
        a, b, se = [], [], []
        for source, row in built.transfer[kind]["mean"].items():
            for target, value in row.items():
                other = shipped.transfer[kind]["mean"][source][target]
                if value is None or other is None:
                    continue
                a.append(value), b.append(other), se.append(shipped.transfer[kind]["se"][source][target] or 0.0)
        a, b, se = map(np.asarray, (a, b, se))
        out[kind] = {"cells": len(a), "spearman": float(spearmanr(a, b).statistic),
                     "mean_abs_diff": float(np.mean(np.abs(a - b))),
                     "within_2se": float(np.mean(np.abs(a - b) <= 2 * se))}
    own = {name: (built.tasks[name]["own_balanced_accuracy"], shipped.tasks[name]["own_balanced_accuracy"])
           for name in built.tasks}
    out["own_balanced_accuracy"] = {name: {"device": round(x, 4), "shipped": round(y, 4)} for name, (x, y) in own.items()}
    return out


def run(args) -> dict:
    device = resolve_device(args.device)
    peak = bf16_peak_tflops(device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}): "
          f"bf16 matmul peak measured {peak:.1f} TFLOP/s", flush=True)
    _record_calls()
    started = time.perf_counter()
    code = main(["reference", "build", "--suite", args.suite, "--backbone", args.backbone, "--device", args.device,
                 "--root", str(args.root), "--prompts-per-pass", str(args.prompts_per_pass),
                 "--train-attention", args.train_attention, "--eval-kernel", args.eval_kernel])
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(code)
    built = ref.read_bundle(args.root / ref.bundle_name(args.suite, args.backbone), None)
    from transferbench.model.backbone import Backbone

    model = Backbone(args.backbone, device="cpu").model
    config = model.config
    params = sum(p.numel() for n, p in model.named_parameters() if ".layer." in n)
    flops = sum(step_flops((rows, length), params, config.num_hidden_layers, config.hidden_size) if grad
                else forward_flops((rows, length), params, config.num_hidden_layers, config.hidden_size)
                for rows, length, grad in CALLS)
    result = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__, "suite": args.suite, "prompts_per_pass": args.prompts_per_pass,
        "train_attention": built.info["build"].get("train_attention", "sdpa"),
        "eval_kernel": built.info["build"].get("eval_kernel", "autocast"),
        "wall_seconds": round(wall, 1),
        "encoder_calls": len(CALLS), "training_calls": sum(g for *_, g in CALLS),
        "rows": sum(r for r, *_ in CALLS), "estimated_pflop": flops / 1e15,
        "achieved_tflops": flops / wall / 1e12, "bf16_peak_tflops": peak,
        "fraction_of_bf16_peak": flops / wall / (peak * 1e12),
    }
    shipped = ref.load_shipped(args.suite, args.backbone)
    if shipped is not None:
        result["vs_shipped"] = _compare(built, shipped)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompts-per-pass", type=int, default=1, help="see `transferbench reference --help`")
    parser.add_argument("--train-attention", default="sdpa", help="see `transferbench reference --help`")
    parser.add_argument("--eval-kernel", default="autocast", help="see `transferbench reference --help`")
    parser.add_argument("--root", type=Path, required=True, help="folder the built bundle is written to")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = run(args)
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
