"""The power of a board: per transfer kind, the median over indicator pairs of the paired minimum
detectable difference in mean rho (`verdict_statistics.paired_mdd`), from committed result files,
and how many admitted targets a reference needs for a stated MDD (`targets_for_mdd`).

    .venv/bin/python benchmarks/power.py [submissions] [--without label_overlap] [--goal 0.15 0.10] [--sources 10 15]

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

import numpy as np

from transferbench.evaluation.target_metrics import target_spearman
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


def subsampled_sd(folder: Path, without: set[str], k: int, repeats: int = 20, seed: int = 0) -> dict[tuple, float]:
    """(suite, backbone, kind, reference) -> the median over indicator pairs and `repeats` draws of
    sd(d) when each target keeps `k` of its sources, drawn at random (the same draw for every
    indicator of a table, so the difference stays paired): how the per-target noise grows as a
    reference measures fewer sources per target (transfer is the file's, rho `target_spearman`)."""
    files: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if data["indicator"]["name"] not in without:
            files[data["suite"], data["backbone"], data["transfer_kind"], data.get("reference")][data["indicator"]["name"]] = data
    rng, out = np.random.default_rng(seed), {}
    for key, by_name in files.items():
        any_file = next(iter(by_name.values()))
        targets = [t for t, row in any_file["metrics"]["per_target"].items() if row.get("spearman") is not None]
        sds = []
        for _ in range(repeats):
            chosen = {t: rng.choice([s for s in any_file["tasks"] if s != t], size=k, replace=False) for t in targets
                      if len(any_file["tasks"]) - 1 > k}
            if len(chosen) < 3:
                break
            rhos = {name: {t: target_spearman([data["scores"][s][t] for s in sources],
                                              [data["transfer"][s][t] for s in sources]) for t, sources in chosen.items()}
                    for name, data in by_name.items()}
            for a, b in itertools.combinations(sorted(rhos), 2):
                diffs = [rhos[a][t] - rhos[b][t] for t in chosen if not math.isnan(rhos[a][t] - rhos[b][t])]
                if len(diffs) >= 3:
                    sds.append(statistics.stdev(diffs))
        if sds:
            out[key] = statistics.median(sds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", nargs="?", default="submissions", type=Path)
    parser.add_argument("--without", nargs="*", default=[], help="indicators left out of the pairs")
    parser.add_argument("--goal", nargs="*", type=float, default=[0.15, 0.10])
    parser.add_argument("--sources", nargs="*", type=int, default=[],
                        help="also re-measure sd(d) with this many sources per target, drawn at random (20 draws)")
    args = parser.parse_args()
    subsampled = {k: subsampled_sd(args.submissions, set(args.without), k) for k in args.sources}
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
        for k, by_table in subsampled.items():
            if (suite, backbone, kind, ref) in by_table:
                sd_k = by_table[suite, backbone, kind, ref]
                print(f"  {k} sources per target (random, 20 draws): median sd of per-target differences {sd_k:.3f}; "
                      f"MDD <= {args.goal[0]:.2f} needs {targets_for_mdd(args.goal[0], k, sd_k / math.sqrt(2))} targets")
        for goal in args.goal:
            fixed = targets_for_mdd(goal, n_sources, rho_sd)
            grown = targets_for_mdd(goal, lambda n: round(n / 0.8) - 1, rho_sd, rho_sd_sources=n_sources)
            print(f"  MDD <= {goal:.2f}: {fixed} targets with {n_sources} sources each (sd as measured); {grown} targets if "
                  f"sources grow with the suite (80% of tasks admitted, every other task a source: "
                  f"{round(grown / 0.8) - 1} sources; sd scaled as 1/sqrt(sources - 3))")


if __name__ == "__main__":
    main()
