"""What one `score(source, target)` call of each built-in indicator costs, per pair.

Computes (or loads) every artifact the built-ins declare on a suite, then times each indicator's
`score` over every ordered pair with its artifacts already in memory: the per-pair figure
`transferbench indicators` shows. Artifact computation is shared between indicators and cached,
so it is not part of the figure.

    TRANSFERBENCH_CACHE=... python benchmarks/indicator_cost.py [--suite smoke] [--repeats 3] [--write]

`--write` stores the figures in indicators/costs.json (package data read by
`transferbench.scoring.indicator.measured_costs`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

from transferbench.pipeline.runner import Benchmark
from transferbench.scoring.indicator import INDICATORS, TaskView, checked_score, make_indicator
from transferbench.tasks import load_suite

COSTS_FILE = Path(__file__).resolve().parents[1] / "indicators" / "costs.json"


def seconds_per_pair(bench: Benchmark, name: str, repeats: int) -> float:
    """Fastest over `repeats` sweeps of the mean wall time of one `score` call."""
    indicator = make_indicator(name)
    declared = frozenset(indicator.requires)
    bench.ensure(sorted(declared))
    # every artifact is loaded before timing: views hold them
    views = {task: TaskView(task, spec.family, spec.num_classes, {a: bench.view(a, task) for a in declared},
                            spec.label_names)
             for task, spec in bench.tasks.items()}
    pairs = [(s, t) for s in bench.tasks for t in bench.tasks if s != t]
    sweeps = []
    for _ in range(repeats):
        started = time.perf_counter()
        for s, t in pairs:
            checked_score(indicator, views[s], views[t])
        sweeps.append((time.perf_counter() - started) / len(pairs))
    return min(sweeps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help=f"store the figures in {COSTS_FILE}")
    args = parser.parse_args()

    suite = load_suite(args.suite)
    bench = Benchmark(suite, args.backbone, list(suite.seeds))
    figures = {}
    for name in INDICATORS.names():
        figures[name] = seconds_per_pair(bench, name, args.repeats)
        print(f"{name:22s} {INDICATORS.get(name).kind:10s} {1000 * figures[name]:10.3f} ms per pair", flush=True)
    if args.write:
        setting = {"suite": args.suite, "backbone": args.backbone, "seeds": list(suite.seeds),
                   "pairs": len(bench.tasks) * (len(bench.tasks) - 1), "repeats": args.repeats,
                   "cpus": os.cpu_count(), "machine": platform.machine(),
                   "date": datetime.date.today().isoformat(),
                   "note": "min over repeats of the mean score() time per pair; artifacts loaded, not timed"}
        COSTS_FILE.write_text(json.dumps({"setting": setting, "seconds_per_pair": figures}, indent=2) + "\n")
        print(f"wrote {COSTS_FILE}")


if __name__ == "__main__":
    main()
