"""Mean per-target Spearman rho, the transferbench headline, as a local `evaluate` metric.

Load it offline from its folder: `evaluate.load("<path to transferbench/metrics/per_target_spearman>")`.
The numbers come from `transferbench.evaluation.summary` (one definition of each formula); this file only
groups the pairs by target.
"""

import datasets
import evaluate

from transferbench.evaluation.summary import MIN_SOURCES, mean_of_defined, target_spearman

_DESCRIPTION = """
For every target task, the Spearman correlation (average ranks for ties) between an indicator's
scores (`predictions`) and the measured transfer (`references`) over the source tasks; the result
is the mean over targets. Pass only off-diagonal pairs (source != target). A pair with NaN in
either value is dropped; a target with fewer than 3 valid sources, or constant scores or
transfer, is not covered and left out of the mean.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: indicator scores, one per (source, target) pair.
    references: measured transfer, one per pair.
    targets: the target task name of each pair.
Returns:
    mean_spearman: mean per-target Spearman rho over covered targets (NaN if none).
    n_targets: distinct targets; n_targets_covered: targets that could be scored.
    per_target: target -> Spearman rho (NaN if not covered).
Example:
    >>> metric = evaluate.load("transferbench/metrics/per_target_spearman")
    >>> metric.compute(predictions=[1, 2, 3], references=[10, 20, 30], targets=["a", "a", "a"])
"""

_CITATION = """
@inproceedings{su-etal-2022-transferability,
  title = {On Transferability of Prompt Tuning for Natural Language Processing},
  author = {Su, Yusheng and others},
  booktitle = {NAACL},
  year = {2022}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PerTargetSpearman(evaluate.Metric):
    """Mean over targets of the Spearman correlation between scores and transfer."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("float64"),
                    "references": datasets.Value("float64"),
                    "targets": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions, references, targets):
        groups = {}
        for score, transfer, target in zip(predictions, references, targets):
            pair = groups.setdefault(target, ([], []))
            pair[0].append(float("nan") if score is None else score)
            pair[1].append(float("nan") if transfer is None else transfer)
        per_target = {t: target_spearman(s, g) for t, (s, g) in sorted(groups.items())}
        covered = [rho for rho in per_target.values() if rho == rho]  # NaN != NaN
        return {
            "mean_spearman": mean_of_defined(per_target.values()),
            "n_targets": len(per_target),
            "n_targets_covered": len(covered),
            "min_sources": MIN_SOURCES,
            "per_target": per_target,
        }
