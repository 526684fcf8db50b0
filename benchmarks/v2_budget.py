"""How long must an own prompt train to reach its linear probe? The v2 training budget (issue 24, item 5).

For each task (seed 0 unless told) it trains the suite's own prompt for `--steps` steps at each
`--lr`, evaluates the prompt every `--every` steps on dev (accuracy and balanced accuracy) and on
test (balanced accuracy), and prints, per budget B (a multiple of `--every`), the test balanced
accuracy of the prompt a run of B steps would keep under each dev-selection rule, over the task's
linear probe (the reference's own probe artifact, `probe_unit`). The test evaluations are for this
measurement only; the protocol never looks at test to choose a prompt.

    nice python benchmarks/v2_budget.py --suite default_v2 --tasks rt_sentiment,debate_party \\
        --steps 400 --every 50 --lr 0.03,0.1 --json budget.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
from rich.console import Console
from rich.table import Table

from transferbench.api import benchmark_for
from transferbench.model import prompt as prompt_module
from transferbench.model.prompt import predict, train_prompt
from transferbench.reference.protocol import balanced_accuracy


def trajectory(bench, task: str, seed: int, steps: int, every: int, lr: float) -> list[dict]:
    """Dev accuracy, dev and test balanced accuracy of the prompt at every dev evaluation."""
    config = replace(bench.config, steps=steps, eval_every=every, lr=lr)
    backbone, verbalizer = bench.backbone, bench.verbalizer(task)
    dev, test = bench.encoded(task, "dev"), bench.encoded(task, "test")
    points: list[dict] = []
    original = prompt_module.split_accuracy

    def recording(backbone_, prompt, split, verbalizer_, config_, kernel="autocast"):
        # train_prompt calls this at each dev evaluation: record dev and test alongside
        dev_pred = predict(backbone_, prompt, split, verbalizer_, config_, kernel)
        test_pred = predict(backbone_, prompt, test, verbalizer_, config_, kernel)
        points.append({"step": every * (len(points) + 1) if every * (len(points) + 1) <= steps else steps,
                       "dev_acc": float((dev_pred == split.labels.numpy()).mean()),
                       "dev_bacc": balanced_accuracy(dev_pred, split.labels.numpy(), num_classes=bench.tasks[task].num_classes),
                       "test_bacc": balanced_accuracy(test_pred, test.labels.numpy(), num_classes=bench.tasks[task].num_classes)})
        return points[-1]["dev_acc"]

    prompt_module.split_accuracy = recording
    try:
        train_prompt(backbone, bench.encoded(task, "train"), dev, verbalizer, config, seed,
                     attention=bench.train_attention, eval_kernel=bench.eval_kernel)
    finally:
        prompt_module.split_accuracy = original
    return points


def selected(points: list[dict], budget: int, rule: str) -> float:
    """Test balanced accuracy of the prompt kept after `budget` steps by dev `rule` (first best wins)."""
    seen = [p for p in points if p["step"] <= budget]
    best = max(seen, key=lambda p: (p[rule], -p["step"]))
    return best["test_bacc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default_v2")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--lr", default="0.03")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json")
    args = parser.parse_args()
    console = Console(markup=False)
    bench = benchmark_for(args.suite, args.backbone, use_shipped=False, precision=args.precision)
    console.print(f"{bench.precision.phrase()}; train attention {bench.train_attention}, eval {bench.eval_kernel}")
    results = []
    for task in args.tasks.split(","):
        labels = bench.encoded(task, "test").labels.numpy()
        probe = balanced_accuracy(bench.get("probe", task=task)["predictions"].numpy(), labels,
                                  num_classes=bench.tasks[task].num_classes)
        for lr in (float(x) for x in args.lr.split(",")):
            started = time.perf_counter()
            points = trajectory(bench, task, args.seed, args.steps, args.every, lr)
            results.append({"task": task, "lr": lr, "probe": probe, "points": points,
                            "seconds": round(time.perf_counter() - started, 1)})
            console.print(f"{task} lr {lr}: {results[-1]['seconds']} s, probe {probe:.3f}, "
                          + " ".join(f"{p['step']}:{p['test_bacc']:.3f}" for p in points))
            if args.json:
                with open(args.json, "w") as file:
                    json.dump(results, file, indent=1)
    budgets = sorted({p["step"] for r in results for p in r["points"]})
    for rule in ("dev_acc", "dev_bacc"):
        table = Table(title=f"own/probe (test balanced accuracy over the probe's), prompt kept by {rule}")
        for column in ["task", "lr", "probe", *map(str, budgets)]:
            table.add_column(column)
        for r in results:
            table.add_row(r["task"], str(r["lr"]), f"{r['probe']:.3f}",
                          *[f"{selected(r['points'], b, rule) / r['probe']:.2f}" for b in budgets])
        console.print(table)
    ratios = {b: [selected(r["points"], b, "dev_bacc") / r["probe"] for r in results] for b in budgets}
    console.print("median own/probe by budget (dev_bacc): "
                  + ", ".join(f"{b}: {np.median(v):.2f}" for b, v in ratios.items()))


if __name__ == "__main__":
    main()
