"""The top of a `torch.profiler` profile of prompt training and of zero-shot evaluation.

Profiles `--steps` training steps of `prompt.train_prompt` and `--batches` evaluation batches of
`prompt.predict_many` (12 prompts per pass, as a zero-shot row) on task `rt_sentiment` of the
`default` suite with the suite's settings, after one warm-up of each, and prints the operators
sorted by their own (self) CPU time.

    TRANSFERBENCH_CACHE=/tmp/tbcache_default python benchmarks/profile_step.py --steps 10 --rows 12
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from transferbench.backbone import Backbone, resolve_device
from transferbench.prompt import (
    TRAIN_ATTENTION, PromptConfig, Verbalizer, encode_split, initial_prompt, predict_many, train_prompt,
)
from transferbench.task import load_suite, load_task, load_task_data

TASK, SUITE = "rt_sentiment", "default"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="training steps profiled")
    parser.add_argument("--prompts", type=int, default=12, help="prompts per zero-shot evaluation pass")
    parser.add_argument("--rows", type=int, default=12, help="operators shown per profile")
    parser.add_argument("--train-attention", default="sdpa", choices=TRAIN_ATTENTION,
                        help="attention kernel of the training steps (as `transferbench run --train-attention`)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    backbone = Backbone("minilm", device=device)
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

    warm_up = PromptConfig.from_overrides({**suite.training, "steps": 1})
    train_prompt(backbone, train, None, verbalizer, warm_up, 0, attention=args.train_attention)
    with profile(activities=activities) as training:
        train_prompt(backbone, train, None, verbalizer, config, seed=0, attention=args.train_attention)
    print(f"== training: {args.steps} steps of batch {config.batch_size} on {TASK} ({device}, "
          f"--train-attention {args.train_attention})")
    print(training.key_averages().table(sort_by=sort, row_limit=args.rows))

    predict_many(backbone, prompts, test, verbalizer, config)
    with profile(activities=activities) as evaluation:
        predict_many(backbone, prompts, test, verbalizer, config)
    print(f"== zero-shot evaluation: {args.prompts} prompts x {len(test)} test examples ({device})")
    print(evaluation.key_averages().table(sort_by=sort, row_limit=args.rows))


if __name__ == "__main__":
    main()
