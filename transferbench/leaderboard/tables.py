"""The leaderboard's tables: result files grouped by setting, deduplicated, ranked, as DataFrames.

Results from different suites, backbones or transfer kinds are never ranked together: each
(suite, backbone, transfer_kind, reference) is its own table, ranked by the mean per-target
Spearman. The renderers of these tables are in `transferbench.leaderboard.render` (Markdown, CSV,
JSON, terminal) and `transferbench.leaderboard.page` (the HTML page).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import pandas as pd

from transferbench.evaluation.results import ResultFile, dataframes, per_seed_frames, result_json
from transferbench.evaluation.summary import paired_test, rank_intervals, split_seed_tau
from transferbench.reference.protocol import TRANSFER_KIND_HELP

class TableKey(NamedTuple):
    """What one table ranks: results of one setting, scored against one reference ground truth."""

    suite: str
    backbone: str
    transfer_kind: str
    reference: str  # first 12 hex digits of the reference hash ("none" for files without one)

    def plot_stem(self) -> str:
        """The backbone part of plot file names: backbone plus reference, so settings never collide."""
        return f"{self.backbone}-ref-{self.reference}"

COLUMNS = [
    "rank",
    "indicator",
    "baseline",
    "local",
    "verified",
    "mean_spearman",
    "ci_low",
    "ci_high",
    "permutation_p",
    "rank_low",
    "rank_high",
    "within_family",
    "within_family_targets",
    "across_family",
    "across_family_targets",
    "partial_spearman",
    "top1_rate",
    "regret@1",
    "regret@3",
    "ndcg@3",
    "kendall",
    "weighted_tau",
    "pooled_spearman",
    "targets_covered",
    "sig",
]
SIGNIFICANCE_LEVEL = 0.05
LEADERBOARD_VERSION = 2
RANK_BOOTSTRAP = 1000
"""Replicates of the table-level bootstrap over targets and seeds behind the rank intervals."""
RANK_BOOTSTRAP_SEED = 0



def _newest_first_key(result: ResultFile) -> tuple[str, str]:
    # created_at orders duplicates; the content hash only makes equal timestamps deterministic.
    return (result.created_at(), hashlib.sha256(result_json(result)).hexdigest())


def shown_path(path: Path | str) -> str:
    """A path as shown in the outputs: relative to the working directory when under it, so the
    generated files do not depend on where the repository is checked out."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _describe(result: ResultFile) -> str:
    if result.path is not None:
        return shown_path(result.path)
    return f"created_at {result.created_at() or '?'}"


def _deduplicate(results: Sequence[ResultFile]) -> tuple[list[ResultFile], list[str]]:
    """One result per indicator name + params (and origin: a user's local result never hides the
    project's, nor the reverse): the newest by manifest created_at, with a note. The project's
    submissions never get here with two files of one row (`load_results` refuses them), so this
    only picks among a user's own results or results built in memory."""
    groups: dict[tuple[str, str, bool], list[ResultFile]] = {}
    for result in results:
        groups.setdefault((result.indicator.name, result.indicator.params_key(), result.local), []).append(result)
    kept, notes = [], []
    for group in groups.values():
        group = sorted(group, key=_newest_first_key, reverse=True)
        kept.append(group[0])
        if len(group) > 1:
            dropped = "; ".join(_describe(r) for r in group[1:])
            notes.append(
                f"{len(group)} results for {group[0].indicator.label()}: kept the newest "
                f"({_describe(group[0])}), ignored {dropped}"
            )
    return kept, sorted(notes)


def _row(result: ResultFile) -> dict[str, Any]:
    m = result.metrics
    return {
        "indicator": result.indicator.label(),
        "baseline": result.indicator.baseline,
        "local": result.local,
        # True: re-scored from code with the file's scores; False: not (a note says why); None: not checked
        "verified": None if result.verification is None else result.verification.verified,
        "mean_spearman": m.mean_spearman,
        "ci_low": m.ci_low,
        "ci_high": m.ci_high,
        "permutation_p": m.permutation_p,
        "within_family": m.within_family_spearman,
        "within_family_targets": m.n_targets_within_family,
        "across_family": m.across_family_spearman,
        "across_family_targets": m.n_targets_across_family,
        "partial_spearman": m.partial_spearman,
        "top1_rate": m.top1_rate,
        "regret@1": m.mean_regret.get(1, math.nan),
        "regret@3": m.mean_regret.get(3, math.nan),
        "ndcg@3": m.mean_ndcg.get(3, math.nan),
        "kendall": m.mean_kendall,
        "weighted_tau": m.mean_weighted_tau,
        "pooled_spearman": m.pooled_spearman,
        "targets_covered": f"{m.n_targets_covered}/{m.n_targets}",
    }


def _ranked(results: Sequence[ResultFile]) -> list[ResultFile]:
    """One setting's results in leaderboard order: mean Spearman descending, undefined last,
    then by label."""
    return sorted(
        results,
        key=lambda r: (
            math.isnan(r.metrics.mean_spearman),
            -r.metrics.mean_spearman if not math.isnan(r.metrics.mean_spearman) else 0.0,
            r.indicator.label(),
            r.local,
        ),
    )


def _stability(ordered: Sequence[ResultFile]) -> tuple[list[tuple[int, int]], dict[str, Any]]:
    """Rank intervals (in `ordered` order) and the split-seed check of one table.

    Both need every file's transfer per seed, with the same number of seeds; otherwise the
    rank bootstrap resamples targets only and the split-seed tau is NaN, and the notes say why.
    """
    if not ordered:
        return [], {}
    scores = [dataframes(result)[0] for result in ordered]
    per_seed = [per_seed_frames(result) for result in ordered]
    missing = sum(1 for frames in per_seed if not frames)
    info: dict[str, Any] = {"rank_resampled": "targets and seeds", "rank_note": ""}
    if missing or len({len(frames) for frames in per_seed}) > 1:
        why = (
            f"{missing} of {len(ordered)} result files carry no per-seed transfer" if missing
            else "the result files have different numbers of seeds"
        )
        info["rank_resampled"] = "targets only"
        info["rank_note"] = f"rank intervals resample targets only: {why}"
        per_seed = [[dataframes(result)[1]] for result in ordered]
        tau, splits, reason = math.nan, 0, why
    else:
        tau, splits, reason = split_seed_tau(scores, per_seed)
    intervals = rank_intervals(scores, per_seed, n_bootstrap=RANK_BOOTSTRAP, seed=RANK_BOOTSTRAP_SEED)
    info.update(split_seed_tau=tau, split_seed_splits=splits, split_seed_reason=reason)
    return intervals, info


def _table(ordered: Sequence[ResultFile]) -> pd.DataFrame:
    """The table of one setting's results, already in rank order; `attrs` holds the split-seed
    check (`split_seed_tau`, `split_seed_splits`, `split_seed_reason`) and how the rank intervals
    were resampled (`rank_resampled`, `rank_note`)."""
    intervals, stability = _stability(ordered)
    rows = []
    for position, result in enumerate(ordered):
        row = _row(result)
        row["rank"] = position + 1
        row["rank_low"], row["rank_high"] = intervals[position]
        row["sig"] = math.nan
        if position > 0:
            row["sig"] = paired_test(
                result.metrics.per_target_spearman(),
                ordered[position - 1].metrics.per_target_spearman(),
            )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("rank", "rank_low", "rank_high", "within_family_targets", "across_family_targets"):
        frame[column] = frame[column].astype(int)
    frame["baseline"] = frame["baseline"].astype(bool)
    frame["local"] = frame["local"].astype(bool)
    frame.attrs.update(stability)
    return frame


def _verification_notes(results: Sequence[ResultFile]) -> list[str]:
    """One note per reason a row was not verified, naming its rows (`leaderboard.verify`)."""
    by_reason: dict[str, list[str]] = {}
    for result in results:
        if result.verification is not None and not result.verification.verified:
            by_reason.setdefault(result.verification.why, []).append(result.indicator.label())
    return [f"not verified ({', '.join(sorted(labels))}): {why}" for why, labels in sorted(by_reason.items())]


def table_settings(results: Iterable[ResultFile]) -> dict[TableKey, tuple[list[ResultFile], list[str]]]:
    """(suite, backbone, transfer_kind) -> (deduplicated results in rank order, notes), keys sorted."""
    groups: dict[TableKey, list[ResultFile]] = {}
    for result in results:
        key = TableKey(result.suite, result.backbone, result.transfer_kind, (result.reference or "none")[:12])
        groups.setdefault(key, []).append(result)
    settings = {}
    for key in sorted(groups):
        kept, notes = _deduplicate(groups[key])
        excluded = kept[0].excluded_targets if kept else {}
        meaning = TRANSFER_KIND_HELP.get(key.transfer_kind)
        notes = [*([f"measured transfer: {meaning} (docs/protocol.md)"] if meaning else []),
                 *(f"target {task} is excluded by the reference: {reason}" for task, reason in sorted(excluded.items())),
                 *_verification_notes(kept), *notes]
        settings[key] = (_ranked(kept), notes)
    return settings


def build_tables(results: Iterable[ResultFile]) -> dict[TableKey, pd.DataFrame]:
    """One ranked table per (suite, backbone, transfer_kind), keys in sorted order.

    Columns are `COLUMNS`. If a table would hold two results of the same indicator name and
    params, only the newest (manifest `created_at`) is kept; `table.attrs["notes"]` says so.
    """
    return grouped_tables(table_settings(results))


def grouped_tables(settings: dict[TableKey, tuple[list[ResultFile], list[str]]]) -> dict[TableKey, pd.DataFrame]:
    tables = {}
    for key, (ranked, notes) in settings.items():
        table = _table(ranked)
        table.attrs["notes"] = notes
        tables[key] = table
    return tables
