"""Wall time of the zero-shot transfer matrix as the number of tasks grows (pairs = N(N-1)).

For the first 4, 8 and 12 tasks of the `full` suite, every ordered pair (source, target) is
evaluated two ways, back to back per target so that a load change on a shared machine hits both:
one prompt at a time (`predict` per pair) and all sources
of a target in one batched pass (`predict_many`). Only the matrix time matters, so the source
prompts are trained for a few steps, in a cache of their own (never the default suite's cache).

    .venv/bin/python benchmarks/transfer_scaling.py --json scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

DEFAULT_CACHE = "/tmp/tbcache_scaling"


def prepare_cache(cache: Path, seed_cache: Path) -> None:
    """Point `cache`'s downloads and models at `seed_cache`'s, so nothing is fetched twice."""
    (cache / "downloads").mkdir(parents=True, exist_ok=True)
    for entry in sorted((seed_cache / "downloads").glob("*")) if (seed_cache / "downloads").is_dir() else []:
        link = cache / "downloads" / entry.name
        if not link.exists():
            link.symlink_to(entry)
    if (seed_cache / "models").is_dir() and not (cache / "models").exists():
        (cache / "models").symlink_to(seed_cache / "models")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 12], help="numbers of tasks")
    parser.add_argument("--steps", type=int, default=5, help="prompt-training steps (only the matrix time matters)")
    parser.add_argument("--dev", type=int, default=32,
                        help="dev examples per task (only the untimed prompt training reads them)")
    parser.add_argument("--test-examples", type=int, default=None,
                        help="use only the first K test examples of each target (default: the whole test split)")
    parser.add_argument("--cache", default=DEFAULT_CACHE, help="cache for the short prompts (not the default cache)")
    parser.add_argument("--seed-cache", default=os.environ.get("TRANSFERBENCH_CACHE", "~/.cache/transferbench"),
                        help="cache whose downloads and models are reused")
    parser.add_argument("--json", metavar="OUT", help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    cache, seed_cache = Path(args.cache).expanduser(), Path(args.seed_cache).expanduser()
    if cache.resolve() == seed_cache.resolve():
        parser.error("--cache must differ from the seed cache: short prompts must not pollute it")
    prepare_cache(cache, seed_cache)
    os.environ["TRANSFERBENCH_CACHE"] = str(cache)  # read by transferbench.store.cache_root at call time

    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from transferbench.model.prompt import EncodedSplit, predict, predict_many
    from transferbench.pipeline.runner import Benchmark
    from transferbench.tasks import load_suite

    console = Console(width=150)
    full = load_suite("full")
    largest = max(args.sizes)
    if largest > len(full.tasks):
        parser.error(f"the full suite has {len(full.tasks)} tasks; --sizes asks for {largest}")
    # Short training and a small dev split: the prompts only need to exist. The test splits keep
    # the suite's sizes (they are what the matrix evaluates).
    sizes = {t: s.model_copy(update={"dev": args.dev}) for t, s in full.task_sizes.items()}
    suite = full.model_copy(update={"tasks": full.tasks[:largest], "dev": args.dev, "task_sizes": sizes,
                                    "training": {**full.training, "steps": args.steps, "eval_every": args.steps}})
    bench = Benchmark(suite, "minilm", [0], console=console)
    with bench.progress():
        bench.ensure(["prompts"])
    prompts = {t: bench.source_prompt(t, 0)["prompt"] for t in suite.tasks}
    backbone, config = bench.backbone, bench.config

    def test_split(task: str) -> EncodedSplit:
        split = bench.encoded(task, "test")
        k = args.test_examples or len(split)
        types = split.token_type_ids[:k] if split.token_type_ids is not None else None
        return EncodedSplit(split.input_ids[:k], types, split.labels[:k])

    first = suite.tasks[0]  # warm-up (first-call kernel setup), untimed
    predict(backbone, prompts[first], test_split(first), bench.verbalizer(first), config)
    predict_many(backbone, torch.stack([prompts[first]] * 2), test_split(first), bench.verbalizer(first), config)

    rows = []
    for n in sorted(args.sizes):
        names = suite.tasks[:n]
        one_at_a_time = batched = 0.0
        agree = total = 0
        for target in names:
            sources = [s for s in names if s != target]
            test, verbalizer = test_split(target), bench.verbalizer(target)
            start = time.perf_counter()
            single = np.stack([predict(backbone, prompts[s], test, verbalizer, config) for s in sources])
            one_at_a_time += time.perf_counter() - start
            start = time.perf_counter()
            many = predict_many(backbone, torch.stack([prompts[s] for s in sources]), test, verbalizer, config)
            batched += time.perf_counter() - start
            agree += int((single == many).sum())
            total += single.size
        pairs = n * (n - 1)
        rows.append({"tasks": n, "pairs": pairs, "predict_seconds": one_at_a_time, "predict_many_seconds": batched,
                     "predict_seconds_per_pair": one_at_a_time / pairs, "predict_many_seconds_per_pair": batched / pairs,
                     "speedup": one_at_a_time / batched, "prediction_agreement": agree / total})
        r = rows[-1]
        console.print(f"{n} tasks, {pairs} pairs: predict {r['predict_seconds']:.1f} s, predict_many "
                      f"{r['predict_many_seconds']:.1f} s, speed-up {r['speedup']:.2f}x")

    table = Table(title="Zero-shot transfer matrix: wall time (pairs = N(N-1))")
    for column in ("tasks", "pairs", "predict s", "s/pair", "predict_many s", "s/pair ", "speed-up", "same predictions"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["tasks"]), str(r["pairs"]), f"{r['predict_seconds']:.1f}",
                      f"{r['predict_seconds_per_pair']:.3f}", f"{r['predict_many_seconds']:.1f}",
                      f"{r['predict_many_seconds_per_pair']:.3f}", f"{r['speedup']:.2f}x",
                      f"{100 * r['prediction_agreement']:.2f}%")
    console.print(table)
    examples = args.test_examples or "all"
    console.print(f"test examples per target: {examples}; {torch.get_num_threads()} threads; torch {torch.__version__}")
    result = {"sizes": args.sizes, "steps": args.steps, "test_examples": args.test_examples, "tasks": suite.tasks,
              "threads": torch.get_num_threads(), "rows": rows, "date": time.strftime("%Y-%m-%d")}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
