"""The power of a board: per transfer kind, the median over indicator pairs of the paired minimum
detectable difference in mean rho (`verdict_statistics.paired_mdd`), from committed result files,
and how many admitted targets a reference needs for a stated MDD (`targets_for_mdd`).

    .venv/bin/python benchmarks/power.py [submissions] [--without label_overlap] [--goal 0.15 0.10]

Issue 24 measured 0.35 / 0.40 / 0.42 (zero_shot / zero_shot_relative / init_gain) on the board of 13
indicators before label_overlap joined it: `--without label_overlap` reproduces that board.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from transferbench.evaluation.verdict_statistics import paired_mdd, targets_for_mdd


def per_target_rho(folder: Path, without: set[str],
                   sources: dict[tuple, list[int]] | None = None) -> dict[tuple, dict[str, dict[str, float]]]:
    """(suite, backbone, kind, reference) -> indicator -> target -> Spearman rho (covered targets);
    `sources`, when given, collects each table's per-target source counts."""
    tables: dict[tuple, dict[str, dict[str, float]]] = defaultdict(dict)
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if data["indicator"]["name"] in without:
            continue
        key = (data["suite"], data["backbone"], data["transfer_kind"], data.get("reference"))
        if sources is not None:
            sources.setdefault(key, []).extend(row["n_sources"] for row in data["metrics"]["per_target"].values()
                                               if row.get("spearman") is not None and row.get("n_sources"))
        tables[key][data["indicator"]["name"]] = {
            target: row["spearman"] for target, row in data["metrics"]["per_target"].items()
            if row.get("spearman") is not None}
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", nargs="?", default="submissions", type=Path)
    parser.add_argument("--without", nargs="*", default=[], help="indicators left out of the pairs")
    parser.add_argument("--goal", nargs="*", type=float, default=[0.15, 0.10])
    args = parser.parse_args()
    sources: dict[tuple, list[int]] = {}
    for (suite, backbone, kind, ref), rows in sorted(per_target_rho(args.submissions, set(args.without), sources).items()):
        n_sources = round(statistics.median(sources[suite, backbone, kind, ref] or [11]))
        pairs = list(itertools.combinations(sorted(rows), 2))
        mdds = [paired_mdd(rows[a], rows[b]) for a, b in pairs]
        sds = []  # sd of the per-target differences of each pair: what the planning below scales
        for a, b in pairs:
            common = sorted(set(rows[a]) & set(rows[b]))
            sds.append(statistics.stdev([rows[a][t] - rows[b][t] for t in common]))
        n_targets = statistics.median(len(r) for r in rows.values())
        print(f"{suite} / {backbone} / {kind} (reference {str(ref)[:12]}): {len(rows)} indicators, {len(pairs)} pairs, "
              f"{n_targets:g} targets of {n_sources} sources; median paired MDD {statistics.median(m for m in mdds if not math.isnan(m)):.3f} "
              f"(min {min(mdds):.3f}, max {max(mdds):.3f}); median sd of per-target differences "
              f"{statistics.median(sds):.3f} (per indicator, sd / sqrt 2 = {statistics.median(sds) / math.sqrt(2):.3f})")
        rho_sd = statistics.median(sds) / math.sqrt(2)
        for goal in args.goal:
            fixed = targets_for_mdd(goal, n_sources, rho_sd)
            grown = targets_for_mdd(goal, lambda n: round(n / 0.8) - 1, rho_sd, rho_sd_sources=n_sources)
            print(f"  MDD <= {goal:.2f}: {fixed} targets with {n_sources} sources each (sd as measured); {grown} targets if "
                  f"sources grow with the suite (80% of tasks admitted, every other task a source: "
                  f"{round(grown / 0.8) - 1} sources; sd scaled as 1/sqrt(sources - 3))")


if __name__ == "__main__":
    main()
