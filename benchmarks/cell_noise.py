"""Do a reference's transfer cells rise above their own noise? (issue 24 item 3)

Per transfer kind and admitted target: the spread of the cell means across sources (sample SD)
over the root mean square of the per-cell bootstrap SEs (`se`, over test examples and seeds;
docs/protocol.md; a median would be 0 where most cells' predictions never move), and
the share of cells whose 95% interval excludes 0. A ratio near 1 means the ranking a target asks
indicators to predict is mostly noise; issue 24 measured 0.6-1.8 for v1's init_gain.

    .venv/bin/python benchmarks/cell_noise.py [reference/default_v2__splade-tiny ...]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from transferbench.errors import TransferbenchError
from transferbench.reference.bundle import Reference, read_bundle

REPO = Path(__file__).resolve().parents[1]


def signal_to_noise(reference: Reference, kind: str) -> dict[str, tuple[float, float]]:
    """Admitted target -> (spread of its cell means across sources / their RMS SE, share of its
    cells whose 95% interval excludes 0)."""
    out = {}
    for target, row in reference.tasks.items():
        if not row["admitted"]:
            continue
        cells = [(reference.transfer[kind]["mean"][s][target], reference.transfer[kind]["se"][s][target],
                  reference.transfer[kind]["ci_low"][s][target], reference.transfer[kind]["ci_high"][s][target])
                 for s in reference.task_names if s != target]
        cells = [c for c in cells if c[0] is not None and c[1] is not None]
        if len(cells) < 3:
            continue
        means, ses = np.array([c[0] for c in cells]), np.array([c[1] for c in cells])
        clear = np.mean([(low is not None and low > 0) or (high is not None and high < 0) for _, _, low, high in cells])
        out[target] = (float(np.std(means, ddof=1) / np.sqrt(np.mean(ses ** 2))), float(clear))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", type=Path,
                        default=[REPO / "reference" / "default__minilm", REPO / "reference" / "default_v2__splade-tiny"])
    args = parser.parse_args()
    for folder in args.bundles:
        try:
            reference = read_bundle(folder, None)
        except TransferbenchError as error:  # one line, like the CLI's: not a bundle, or a damaged one
            parser.exit(2, f"cell_noise.py: {folder} is not a readable reference bundle: {error}\n")
        for kind in reference.transfer:
            ratios = signal_to_noise(reference, kind)
            if not ratios:
                continue
            values = [r for r, _ in ratios.values()]
            line = (f"{folder.name} / {kind}: {len(ratios)} admitted targets; spread across sources / RMS cell SE: "
                    f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f}), "
                    f"{sum(v < 1.1 for v in values)} below 1.1")
            if kind != "zero_shot_relative":  # a ratio around 1, not a gain around 0
                line += f"; cells whose 95% interval excludes 0: median {statistics.median(c for _, c in ratios.values()):.0%} per target"
            print(line)


if __name__ == "__main__":
    main()
