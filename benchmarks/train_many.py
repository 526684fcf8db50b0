"""Training K prompts together (`prompt.train_prompts`) against one at a time (`prompt.train_prompt`).

Each job is one (task, seed 0) of the suite, with the suite's training settings. Both arms train
the same jobs for `--steps` steps with dev selection off (the dev evaluations are the same work in
both arms, so leaving them out isolates the training pass). The arms alternate (one-by-one,
together, one-by-one, together) and each is timed by its faster run, so a load change on this
shared machine hits both alike. It prints prompt-steps per second, the speed-up, and how far the
prompts trained together are from those trained alone (max |difference| and relative norm).

    python benchmarks/train_many.py --device cpu --jobs 4 --steps 20 [--train-attention eager-compiled]
    python benchmarks/train_many.py --device cuda --jobs 12 --steps 100 --json many.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from rich.console import Console
from rich.table import Table

from transferbench.model.backbone import Backbone, resolve_device
from transferbench.model.kernels import TRAIN_ATTENTION
from transferbench.model.prompt import PromptConfig, TrainJob, Verbalizer, encode_split, train_prompt, train_prompts
from transferbench.tasks import load_suite, load_task, load_task_data


def jobs_for(suite_name: str, count: int, backbone: Backbone, config: PromptConfig) -> tuple[list[str], list[TrainJob]]:
    suite = load_suite(suite_name)
    names = list(suite.tasks)[:count]
    jobs = []
    for name in names:
        spec = load_task(name)
        data = load_task_data(spec, suite)
        verbalizer = Verbalizer(backbone, [spec.verbalizers[n] for n in spec.label_names], config.cosine_scale)
        jobs.append(TrainJob(encode_split(backbone, data.train, config.max_length), None, verbalizer, seed=0))
    return names, jobs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", type=int, default=4, help="prompts trained together (the suite's first tasks)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--train-attention", default="sdpa", choices=TRAIN_ATTENTION,
                        help="attention kernel of the training steps, both arms (as `transferbench run --train-attention`)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    attention = args.train_attention
    console = Console(markup=False)
    device = resolve_device(args.device)
    backbone = Backbone(args.backbone, device=device)
    suite = load_suite(args.suite)
    config = PromptConfig.from_overrides({**suite.training, "steps": args.steps})
    names, jobs = jobs_for(args.suite, args.jobs, backbone, config)
    warm_up = PromptConfig.from_overrides({**suite.training, "steps": 2})
    for group in (jobs[:1], jobs):  # both shapes of pass (a compiled kernel compiles here)
        train_prompts(backbone, group, warm_up, attention=attention)

    timings: dict[str, list[float]] = {"one at a time": [], "together": []}
    results: dict[str, list] = {}
    for _ in range(2):
        for arm in timings:
            _sync(device)
            start = time.perf_counter()
            if arm == "together":
                results[arm] = train_prompts(backbone, jobs, config, attention=attention)
            else:
                results[arm] = [train_prompt(backbone, j.train, None, j.verbalizer, config, j.seed, attention=attention)
                                for j in jobs]
            _sync(device)
            timings[arm].append(time.perf_counter() - start)
    prompt_steps = len(jobs) * args.steps
    alone, together = results["one at a time"], results["together"]
    diff = max(float((a.prompt - b.prompt).abs().max()) for a, b in zip(alone, together))
    rel = max(float((a.prompt - b.prompt).norm() / a.prompt.norm()) for a, b in zip(alone, together))
    figures = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "tasks": names, "steps": args.steps,
        "batch_size": config.batch_size, "bf16": config.bf16, "train_attention": attention,
        "seconds": {arm: min(t) for arm, t in timings.items()},
        "prompt_steps_per_second": {arm: prompt_steps / min(t) for arm, t in timings.items()},
        "speedup": min(timings["one at a time"]) / min(timings["together"]),
        "max_abs_prompt_difference": diff, "max_relative_prompt_difference": rel,
    }
    table = Table(title=f"{len(jobs)} prompts x {args.steps} steps on {figures['device_name']} (batch {config.batch_size} "
                        f"each, --train-attention {attention})")
    for column in ("arm", "best of 2 (s)", "prompt-steps/s"):
        table.add_column(column)
    for arm in timings:
        table.add_row(arm, f"{min(timings[arm]):.2f}", f"{figures['prompt_steps_per_second'][arm]:.1f}")
    console.print(table)
    console.print(f"speed-up {figures['speedup']:.2f}x; prompts together vs alone: max |diff| {diff:.2e}, "
                  f"relative {rel:.2e} (bf16 autocast rounds differently for the longer padded batch)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    main()
