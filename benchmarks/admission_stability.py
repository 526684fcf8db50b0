"""Admission of a shipped reference's targets under many bootstrap RNG seeds, by the rule of
protocol v1 (p < 0.01 against the majority class and the null prompt) and of v2 (lower bound of
the own prompt's advantage above the margin), from its stored predictions alone; and the
per-cell SE of v1's `zero_shot` against v2's `zero_shot_gain` (docs/protocol.md, "Protocol v2").

    .venv/bin/python benchmarks/admission_stability.py [reference/default__minilm] [--rng-seeds 200] [--tasks ...]
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
    args = parser.parse_args()
    shipped = bundle.read_bundle(args.folder, None)
    as_v2 = copy.deepcopy(shipped.info)
    as_v2["protocol"] = dict(protocol.PROTOCOLS[2].record)
    v1 = bundle.admission_frequencies(shipped.info, shipped.predictions, args.rng_seeds, args.tasks)
    v2 = bundle.admission_frequencies(as_v2, shipped.predictions, args.rng_seeds, args.tasks)
    tasks_v2, transfer_v2 = bundle.derive_tables(as_v2, shipped.predictions)
    print(f"{'task':24s} {'v1 admitted':>12s} {'v2 admitted':>12s} {'v2 advantage':>13s} {'lower bound':>12s}")
    for name in v1:
        row = tasks_v2[name]
        print(f"{name:24s} {v1[name]:>8d}/{args.rng_seeds} {v2[name]:>8d}/{args.rng_seeds} "
              f"{row['advantage']:>13.3f} {row['advantage_lcb']:>12.3f}")
    for kind, transfer in (("zero_shot (v1)", shipped.transfer["zero_shot"]),
                           ("zero_shot_gain (v2)", transfer_v2["zero_shot_gain"])):
        se = np.array([v for row in transfer["se"].values() for v in row.values() if v is not None])
        print(f"per-cell bootstrap SE of {kind}: median {np.median(se):.3f}, max {se.max():.3f} ({len(se)} cells)")


if __name__ == "__main__":
    main()
