"""The seed papers' claims, side by side, on every shipped backbone (docs/claims.md quotes this output).

Reads the committed result files of `submissions/` (validated against their shipped reference, as
the leaderboard does) and prints, per backbone and transfer kind:

1. Su et al. 2022 (Sec. 5.2): activated-neuron overlap (`activation_overlap`, their "ON") against
   prompt embedding similarity (`embedding_similarity`): each one's mean rho [95% CI] and
   permutation p, the paired difference, targets won, paired sign-flip p and the paired minimum
   detectable difference;
2. Wang et al. 2022 (Sec. 6.2): skill-neuron overlap (`skill_overlap`) against ON, the same way;
3. within- vs cross-family: the measured transfer from same-family sources against other-family
   sources per admitted target (paired over targets), and each indicator's within / across /
   partial rho from its result file;
4. where those results are on the board, the same pairs with the neuron indicators read where the
   verbalizer reads (`activation_overlap_readout`, `skill_overlap_readout`; docs/indicators.md),
   and each read-out-aware indicator against its [MASK] reading.

    python benchmarks/claims.py [--submissions-dir submissions]

Every number is recomputed from the result files; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from transferbench.evaluation.results import ResultFile, dataframes, load_results
from transferbench.evaluation.verdict_statistics import paired_mdd, paired_test

KINDS = ("zero_shot_relative", "zero_shot", "zero_shot_gain", "init_gain")  # v1's and v2's; each board has its own
PAIRS = (("activation_overlap", "embedding_similarity", "Su et al. Sec. 5.2: ON vs embedding similarity"),
         ("skill_overlap", "activation_overlap", "Wang et al. Sec. 6.2: skill-neuron overlap vs ON"))
# the same claims with the neurons read where the verbalizer reads; left out where not on the board
READOUT_PAIRS = (
    ("activation_overlap_readout", "embedding_similarity", "Su et al. Sec. 5.2, read-out-aware ON vs embedding similarity"),
    ("skill_overlap_readout", "activation_overlap_readout", "Wang et al. Sec. 6.2, read-out-aware"),
    ("activation_overlap_readout", "activation_overlap", "ON read where the verbalizer reads vs at [MASK]"),
    ("skill_on_readout", "skill_on", "skill_on read where the verbalizer reads vs at [MASK]"),
    ("skill_overlap_readout", "skill_overlap", "skill_overlap read where the verbalizer reads vs at [MASK]"))
FAMILY_ROWS = ("activation_overlap", "skill_on", "skill_overlap", "activation_overlap_readout", "skill_on_readout",
               "skill_overlap_readout", "embedding_similarity", "same_family", "random")


def _defined(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if not math.isnan(v)}


def compare(a: ResultFile, b: ResultFile) -> dict[str, float]:
    """Paired comparison of two results of one setting over the targets both define."""
    pa, pb = _defined(a.metrics.per_target_spearman()), _defined(b.metrics.per_target_spearman())
    shared = sorted(set(pa) & set(pb))
    diffs = np.array([pa[t] - pb[t] for t in shared])
    return {"diff": float(diffs.mean()), "wins": int((diffs > 0).sum()), "targets": len(shared),
            "p": paired_test(pa, pb), "mdd": paired_mdd(pa, pb)}


def family_transfer(result: ResultFile) -> dict[str, float]:
    """Mean transfer from same-family vs other-family sources, per admitted target with both kinds
    of source; the paired sign-flip p over those targets."""
    _, transfer = dataframes(result)
    families = result.families
    within, across = {}, {}
    for target in transfer.columns:
        if target in result.excluded_targets:
            continue
        column = transfer[target].drop(index=target).dropna()
        same = [s for s in column.index if families[s] == families[target]]
        other = [s for s in column.index if families[s] != families[target]]
        if same and other:
            within[target], across[target] = float(column[same].mean()), float(column[other].mean())
    diffs = [within[t] - across[t] for t in within]
    return {"within": float(np.mean(list(within.values()))), "across": float(np.mean(list(across.values()))),
            "wins": sum(d > 0 for d in diffs), "targets": len(diffs), "p": paired_test(within, across)}


def _mean(result: ResultFile) -> str:
    m = result.metrics
    return f"{m.mean_spearman:.2f} [{m.ci_low:.2f}, {m.ci_high:.2f}] (perm. p {m.permutation_p:.3f})"


def report(results: list[ResultFile]) -> list[str]:
    lines = []
    for suite, backbone in sorted({(r.suite, r.backbone) for r in results}):  # one board per suite and backbone
        for kind in KINDS:
            by_name = {r.indicator.name: r for r in results if (r.suite, r.backbone) == (suite, backbone)
                       and r.transfer_kind == kind and not r.indicator.params}
            if not by_name:
                continue
            lines.append(f"== suite {suite} · backbone {backbone} · transfer {kind}")
            for a, b, title in (*PAIRS, *(pair for pair in READOUT_PAIRS if pair[0] in by_name)):
                if a not in by_name or b not in by_name:
                    lines.append(f"{title}: not both on this board")
                    continue
                c = compare(by_name[a], by_name[b])
                lines.append(f"{title}")
                lines.append(f"  {a:<26} {_mean(by_name[a])}")
                lines.append(f"  {b:<26} {_mean(by_name[b])}")
                lines.append(f"  difference {c['diff']:+.2f}; {a} higher on {c['wins']} of {c['targets']} targets; "
                             f"paired p {c['p']:.3f}; MDD {c['mdd']:.2f}")
            ft = family_transfer(next(iter(by_name.values())))
            lines.append(f"within- vs cross-family transfer: {ft['within']:.3f} vs {ft['across']:.3f} (mean over "
                         f"targets); within higher on {ft['wins']} of {ft['targets']} targets; paired p {ft['p']:.3f}")
            for name in FAMILY_ROWS:
                if name in by_name:
                    m = by_name[name].metrics
                    lines.append(f"  {name:<26} mean {m.mean_spearman:+.2f}  within {m.within_family_spearman:+.2f} "
                                 f"({m.n_targets_within_family})  across {m.across_family_spearman:+.2f} "
                                 f"({m.n_targets_across_family})  partial {m.partial_spearman:+.2f}")
            lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions-dir", type=Path, default=Path("submissions"))
    args = parser.parse_args()
    results, problems = load_results(args.submissions_dir)
    for path, reason in problems:
        print(f"skipped {path}: {reason}")
    print("\n".join(report([r for r in results if not r.local])))


if __name__ == "__main__":
    main()
