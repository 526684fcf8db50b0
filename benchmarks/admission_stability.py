"""Admission of a shipped reference's targets under many bootstrap RNG seeds, by the rule of
protocol v1 (p < 0.01 against the majority class and the null prompt) and of v2 (lower bound of
the own prompt's advantage above the margin), from its stored predictions alone; and the
per-cell SE of v1's `zero_shot` against v2's `zero_shot_gain` (docs/protocol.md, "Protocol v2").

    .venv/bin/python benchmarks/admission_stability.py [reference/default__minilm] [--rng-seeds 200] [--tasks ...]
        [--rules 1,2]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from transferbench.reference import bundle, protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="reference/default__minilm", type=Path)
    parser.add_argument("--rng-seeds", type=int, default=protocol.ADMISSION_RNG_SEEDS)
    parser.add_argument("--tasks", nargs="*", help="only these tasks (about 0.2 s per task, RNG seed and rule)")
    parser.add_argument("--rules", default="1,2", help="protocol versions whose admission rule to re-run (default 1,2)")
    args = parser.parse_args()
    rules = args.rules.split(",")
    if any(v not in {str(k) for k in protocol.PROTOCOLS} for v in rules):
        parser.error(f"--rules: comma-separated protocol versions ({', '.join(map(str, protocol.PROTOCOLS))}), "
                     f"got {args.rules!r}")
    rules = [int(v) for v in rules]
    shipped = bundle.read_bundle(args.folder, None)
    # Each rule on the same stored predictions, whichever protocol the bundle was built with.
    infos = {}
    for version in sorted({1, 2, *rules}):
        infos[version] = copy.deepcopy(shipped.info)
        infos[version]["protocol"] = dict(protocol.PROTOCOLS[version].record)
    counts = {v: bundle.admission_frequencies(infos[v], shipped.predictions, args.rng_seeds, args.tasks) for v in rules}
    # missing_ok: a v2 bundle holds transfer into its own admitted targets only, which v1's rule
    # may not admit; the SE comparison below covers the cells the bundle holds.
    tables = {v: bundle.derive_tables(infos[v], shipped.predictions, missing_ok=True) for v in (1, 2)}
    tasks_v2 = tables[2][0]
    names = list(counts[rules[0]])
    print(f"{'task':24s}" + "".join(f" {f'v{v} admitted':>12s}" for v in rules) + f" {'v2 advantage':>13s} {'lower bound':>12s}")
    for name in names:
        print(f"{name:24s}" + "".join(f" {counts[v][name]:>8d}/{args.rng_seeds}" for v in rules)
              + f" {tasks_v2[name]['advantage']:>13.3f} {tasks_v2[name]['advantage_lcb']:>12.3f}")
    for v in rules:
        always = sum(n == args.rng_seeds for n in counts[v].values())
        flips = sorted(t for t, n in counts[v].items() if 0 < n < args.rng_seeds)
        print(f"rule v{v}: {always} of {len(names)} tasks admitted under every one of {args.rng_seeds} RNG seeds, "
              f"{len(names) - always - len(flips)} never; admitted under some seeds only: {flips or 'none'}")
    for kind, transfer in (("zero_shot (v1)", tables[1][1]["zero_shot"]),
                           ("zero_shot_gain (v2)", tables[2][1]["zero_shot_gain"])):
        se = np.array([v for row in transfer["se"].values() for v in row.values() if v is not None])
        print(f"per-cell bootstrap SE of {kind}: median {np.median(se):.3f}, max {se.max():.3g} ({len(se)} cells)")


if __name__ == "__main__":
    main()
