"""The verdict across backbones: one table per (suite, transfer kind) pooling the targets of every
shipped reference of that suite, each (backbone, target) one unit, so evidence from several
backbones adds up instead of staying split over small per-backbone tables.

Only the project's rows (not a user's local results) of settings scored against their shipped
reference are pooled. An indicator's pooled mean rho is the unit-weighted mean of its defined
per-target rho over all units; its per-backbone means stay visible as columns. Rank intervals and
the pooled CI come from a bootstrap over units and seeds stratified by backbone
(`pooled_rank_intervals`); `p vs above` and the paired minimum detectable difference are over the
units both rows share. An indicator missing on a pooled backbone is marked and ranked after the
complete rows (its mean is over fewer units, so it is not comparable with theirs).

A pooled table of one backbone would repeat that backbone's own tables: every renderer shows only
the tables of at least two backbones (`shown_pooled`) and says the rest in one line per (suite,
backbone) (`single_backbone_lines`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd

from transferbench.evaluation.results import ResultFile, dataframes, per_seed_frames
from transferbench.evaluation.verdict_statistics import (
    paired_mdd, paired_test, pooled_rank_intervals,
)
from transferbench.leaderboard.tables import RANK_BOOTSTRAP, RANK_BOOTSTRAP_SEED, TableKey


class PooledKey(NamedTuple):
    """What one pooled table ranks: every shipped reference of a suite, for one transfer kind."""

    suite: str
    transfer_kind: str


POOLED_COLUMNS = [
    "rank", "indicator", "baseline", "mean_spearman", "ci_low", "ci_high", "rank_low", "rank_high",
    "units_covered", "backbones_covered", "complete", "sig", "mdd",
]
"""Fixed columns of a pooled table; one more per pooled backbone, `rho[<backbone>]`, its mean rho
on that backbone's own table (NaN when the indicator has no result there)."""


def backbone_column(backbone: str) -> str:
    return f"rho[{backbone}]"


def _shipped_settings(keys: Sequence[TableKey]) -> list[TableKey]:
    """The settings scored against their shipped reference (the pinned hash of their bundle)."""
    from transferbench.reference.bundle import bundle_name, pinned_hashes

    pins = pinned_hashes()
    return [key for key in keys
            if key.reference != "none" and pins.get(bundle_name(key.suite, key.backbone), "")[:12] == key.reference]


def _transfer_per_seed(results: Sequence[ResultFile]) -> list[list[pd.DataFrame]]:
    """Every file's per-seed transfer, or each file's mean as its one seed when a file lacks them
    or the counts differ (then the bootstrap resamples targets only on that backbone, as the
    per-backbone table does)."""
    per_seed = [per_seed_frames(result) for result in results]
    if any(not frames for frames in per_seed) or len({len(frames) for frames in per_seed}) > 1:
        return [[dataframes(result)[1]] for result in results]
    return per_seed


def _units(result: ResultFile, backbone: str) -> dict[str, float]:
    return {f"{backbone}/{target}": rho for target, rho in result.metrics.per_target_spearman().items()}


def _pooled_table(key: PooledKey, settings: list[tuple[TableKey, list[ResultFile]]]) -> pd.DataFrame:
    backbones = [setting.backbone for setting, _ in settings]
    by_label: dict[tuple[str, bool], dict[str, ResultFile]] = {}
    for setting, results in settings:
        for result in results:
            if not result.local:
                by_label.setdefault((result.indicator.label(), result.indicator.baseline), {})[setting.backbone] = result
    rows = []
    for (label, baseline), on in by_label.items():
        units: dict[str, float] = {}
        for backbone, result in on.items():
            units.update(_units(result, backbone))
        defined = [rho for rho in units.values() if not math.isnan(rho)]
        row = {
            "indicator": label, "baseline": baseline,
            "mean_spearman": float(np.mean(defined)) if defined else math.nan,
            "units_covered": len(defined), "backbones_covered": len(on), "complete": len(on) == len(backbones),
            "_units": units, "_on": on,
        }
        for backbone in backbones:
            row[backbone_column(backbone)] = on[backbone].metrics.mean_spearman if backbone in on else math.nan
        rows.append(row)
    rows.sort(key=lambda r: (not r["complete"], math.isnan(r["mean_spearman"]),
                             -r["mean_spearman"] if not math.isnan(r["mean_spearman"]) else 0.0, r["indicator"]))
    strata = []
    for setting, results in settings:
        official = [result for result in results if not result.local]
        frames = dict(zip((id(r) for r in official), _transfer_per_seed(official)))
        strata.append([
            (dataframes(row["_on"][setting.backbone])[0], frames[id(row["_on"][setting.backbone])])
            if setting.backbone in row["_on"] else None
            for row in rows
        ])
    intervals, cis = pooled_rank_intervals(strata, n_bootstrap=RANK_BOOTSTRAP, seed=RANK_BOOTSTRAP_SEED)
    for position, row in enumerate(rows):
        row["rank"] = position + 1
        row["rank_low"], row["rank_high"] = intervals[position]
        row["ci_low"], row["ci_high"] = cis[position]
        row["sig"] = row["mdd"] = math.nan
        if position > 0:
            above = rows[position - 1]["_units"]
            row["sig"] = paired_test(row["_units"], above)
            row["mdd"] = paired_mdd(row["_units"], above)
    complete = [row for row in rows if row["complete"]]
    pair_mdd = [paired_mdd(a["_units"], b["_units"]) for a, b in itertools.combinations(complete, 2)]
    pair_mdd = [value for value in pair_mdd if not math.isnan(value)]
    columns = [*POOLED_COLUMNS, *(backbone_column(b) for b in backbones)]
    frame = pd.DataFrame([{c: row[c] for c in columns} for row in rows], columns=columns)
    for column in ("rank", "rank_low", "rank_high", "units_covered", "backbones_covered"):
        frame[column] = frame[column].astype(int)
    frame["baseline"] = frame["baseline"].astype(bool)
    frame["complete"] = frame["complete"].astype(bool)
    frame.attrs.update(
        backbones=[
            {"backbone": setting.backbone, "reference": setting.reference,
             "units": len(results[0].metrics.per_target) - len(results[0].excluded_targets) if results else 0}
            for setting, results in settings
        ],
        median_mdd=float(np.median(pair_mdd)) if pair_mdd else math.nan,
        mdd_pairs=len(pair_mdd),
        resampled="units (targets) and seeds, stratified by backbone",
    )
    return frame


def pooled_tables(settings: dict[TableKey, tuple[list[ResultFile], list[str]]]) -> dict[PooledKey, pd.DataFrame]:
    """One pooled table per (suite, transfer kind) with at least one shipped setting, keys sorted;
    the backbones in sorted order. `attrs`: `backbones` ([{backbone, reference, units}]),
    `median_mdd` (median over pairs of complete rows of the paired minimum detectable difference),
    `mdd_pairs`, `resampled`."""
    groups: dict[PooledKey, list[tuple[TableKey, list[ResultFile]]]] = {}
    for setting in sorted(_shipped_settings(list(settings))):
        ranked, _ = settings[setting]
        if any(not result.local for result in ranked):
            groups.setdefault(PooledKey(setting.suite, setting.transfer_kind), []).append((setting, ranked))
    return {key: _pooled_table(key, groups[key]) for key in sorted(groups)}


def shown_pooled(tables: dict[PooledKey, pd.DataFrame]) -> dict[PooledKey, pd.DataFrame]:
    """The pooled tables a renderer shows: those pooling at least two backbones (one backbone's
    pooled table repeats its own tables, `single_backbone_lines` says so instead)."""
    return {key: table for key, table in tables.items() if len(table.attrs.get("backbones", [])) > 1}


def single_backbone_lines(tables: dict[PooledKey, pd.DataFrame]) -> list[str]:
    """What every renderer says instead of the pooled tables that hold one backbone: one line per
    (suite, backbone), naming the transfer kinds and the median minimum detectable difference of
    each (the one figure those tables add to the backbone's own)."""
    groups: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    for key, table in tables.items():
        backbones = table.attrs.get("backbones", [])
        if len(backbones) == 1:
            groups.setdefault((key.suite, backbones[0]["backbone"], backbones[0]["reference"]), []).append(
                (key.transfer_kind, table.attrs.get("median_mdd", math.nan)))
    lines = []
    for (suite, backbone, reference), kinds in sorted(groups.items()):
        mdd = ", ".join(f"{kind} {value:.2f}" for kind, value in kinds if not math.isnan(value))
        lines.append(
            f"Pooled across backbones, suite {suite}: only backbone {backbone} (reference {reference}) has a shipped "
            f"reference with results, so no pooled table is shown (it would repeat the {backbone} tables of "
            f"{', '.join(kind for kind, _ in kinds)}); it pools when another backbone's reference of the suite ships."
            + (f" Median minimum detectable difference in mean ρ between two rows (paired, alpha 0.05, power 0.8): "
               f"{mdd}." if mdd else ""))
    return lines


def pooled_description(key: PooledKey, table: pd.DataFrame) -> list[str]:
    """The lines said under a pooled table: what was pooled, how, what difference it resolves."""
    backbones = table.attrs.get("backbones", [])
    units = sum(b["units"] for b in backbones)
    shown = ", ".join(f"{b['backbone']} (reference {b['reference']}, {b['units']} admitted targets)" for b in backbones)
    lines = [f"Pooled over {len(backbones)} backbone{'s' if len(backbones) != 1 else ''}: {shown}; "
             f"{units} units (backbone, target). Rank intervals and the CI resample {table.attrs.get('resampled', '')}."]
    mdd = table.attrs.get("median_mdd", math.nan)
    if not math.isnan(mdd):
        lines.append(
            f"Minimum detectable difference (paired, two-sided alpha 0.05, power 0.8): median {mdd:.2f} over "
            f"{table.attrs.get('mdd_pairs', 0)} pairs of rows; differences in mean ρ smaller than this are "
            "not resolved by these units.")
    partial = table[~table["complete"]]
    if len(partial):
        lines.append("Rows marked (k/n backbones) have no result on every pooled backbone: their mean is over "
                     "fewer units and they are ranked after the complete rows.")
    return lines


def pooled_json(tables: dict[PooledKey, pd.DataFrame], value: Any) -> list[dict[str, Any]]:
    """The pooled tables shown (`shown_pooled`) as JSON-ready data; `value` turns NaN into None
    (the renderer's)."""
    out = []
    for key, table in shown_pooled(tables).items():
        backbones = [b["backbone"] for b in table.attrs.get("backbones", [])]
        out.append({
            "suite": key.suite,
            "transfer_kind": key.transfer_kind,
            "backbones": table.attrs.get("backbones", []),
            "units": sum(b["units"] for b in table.attrs.get("backbones", [])),
            "resampled": table.attrs.get("resampled", ""),
            "median_mdd": value(table.attrs.get("median_mdd", math.nan)),
            "notes": pooled_description(key, table),
            "rows": [
                {**{column: value(row[column]) for column in POOLED_COLUMNS},
                 "per_backbone": {b: value(row[backbone_column(b)]) for b in backbones}}
                for _, row in table.iterrows()
            ],
        })
    return out
