"""Stage 6, the leaderboard: rank validated result files, one table per setting.

Results from different suites, backbones or transfer kinds are never ranked together: each
(suite, backbone, transfer_kind) is its own table, ranked by the mean per-target Spearman.
`write_leaderboard` renders README.md, leaderboard.csv and leaderboard.json deterministically:
the same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from transferbench.evaluation import paired_test
from transferbench.results import ResultFile, result_json
from transferbench.store import atomic_write_bytes

TableKey = tuple[str, str, str]
"""(suite, backbone, transfer_kind)."""

COLUMNS = [
    "rank",
    "indicator",
    "baseline",
    "mean_spearman",
    "ci_low",
    "ci_high",
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
LEADERBOARD_VERSION = 1

EXPLANATION = (
    "Each row is one indicator; `mean ρ` is the mean over target tasks of the Spearman correlation "
    "between the indicator's scores and the measured transfer from every source task, with a "
    "bootstrap 95% CI over targets (higher is better); top-1 = share of targets whose best source "
    "is the indicator's first choice; regret@k = relative transfer lost by choosing among the "
    "indicator's top k (lower is better); NDCG@3, Kendall tau-b, weighted tau are per-target means; "
    "pooled = one Spearman over all pairs; covered = targets with enough valid, non-constant data.",
    "`p vs above` = two-sided paired sign-flip test of the per-target Spearman against the row "
    "ranked just above; `*` marks p < 0.05. Rows marked (baseline) are reference indicators."
)


def _newest_first_key(result: ResultFile) -> tuple[str, str]:
    # created_at orders duplicates; the content hash only makes equal timestamps deterministic.
    return (result.created_at(), hashlib.sha256(result_json(result)).hexdigest())


def _shown_path(path: Path | str) -> str:
    """A path as shown in the outputs: relative to the working directory when under it, so the
    generated files do not depend on where the repository is checked out."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _describe(result: ResultFile) -> str:
    if result.path is not None:
        return _shown_path(result.path)
    return f"created_at {result.created_at() or '?'}"


def _deduplicate(results: Sequence[ResultFile]) -> tuple[list[ResultFile], list[str]]:
    """One result per indicator name + params: the newest by manifest created_at."""
    groups: dict[tuple[str, str], list[ResultFile]] = {}
    for result in results:
        groups.setdefault((result.indicator.name, result.indicator.params_key()), []).append(result)
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
        "mean_spearman": m.mean_spearman,
        "ci_low": m.ci_low,
        "ci_high": m.ci_high,
        "top1_rate": m.top1_rate,
        "regret@1": m.mean_regret.get(1, math.nan),
        "regret@3": m.mean_regret.get(3, math.nan),
        "ndcg@3": m.mean_ndcg.get(3, math.nan),
        "kendall": m.mean_kendall,
        "weighted_tau": m.mean_weighted_tau,
        "pooled_spearman": m.pooled_spearman,
        "targets_covered": f"{m.n_targets_covered}/{m.n_targets}",
    }


def _table(results: Sequence[ResultFile]) -> pd.DataFrame:
    """Rank one setting's results: mean Spearman descending, undefined last, then by label."""
    ordered = sorted(
        results,
        key=lambda r: (
            math.isnan(r.metrics.mean_spearman),
            -r.metrics.mean_spearman if not math.isnan(r.metrics.mean_spearman) else 0.0,
            r.indicator.label(),
        ),
    )
    rows = []
    for position, result in enumerate(ordered):
        row = _row(result)
        row["rank"] = position + 1
        row["sig"] = math.nan
        if position > 0:
            row["sig"] = paired_test(
                result.metrics.per_target_spearman(),
                ordered[position - 1].metrics.per_target_spearman(),
            )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["rank"] = frame["rank"].astype(int)
    frame["baseline"] = frame["baseline"].astype(bool)
    return frame


def build_tables(results: Iterable[ResultFile]) -> dict[TableKey, pd.DataFrame]:
    """One ranked table per (suite, backbone, transfer_kind), keys in sorted order.

    Columns are `COLUMNS`. If a table would hold two results of the same indicator name and
    params, only the newest (manifest `created_at`) is kept; `table.attrs["notes"]` says so.
    """
    groups: dict[TableKey, list[ResultFile]] = {}
    for result in results:
        groups.setdefault((result.suite, result.backbone, result.transfer_kind), []).append(result)
    tables = {}
    for key in sorted(groups):
        kept, notes = _deduplicate(groups[key])
        table = _table(kept)
        table.attrs["notes"] = notes
        tables[key] = table
    return tables


# ---------------------------------------------------------------------------------------------
# Rendering


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _with_ci(row: pd.Series) -> str:
    if math.isnan(row["mean_spearman"]):
        return "–"
    return f"{row['mean_spearman']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _significance(p: float) -> str:
    if math.isnan(p):
        return ""
    return f"{p:.3f}" + (" *" if p < SIGNIFICANCE_LEVEL else "")


def _label(row: pd.Series) -> str:
    return row["indicator"] + (" (baseline)" if row["baseline"] else "")


def _title(key: TableKey) -> str:
    suite, backbone, kind = key
    return f"suite {suite} · backbone {backbone} · transfer {kind}"


DISPLAY_HEADERS = [
    "#", "indicator", "mean ρ [95% CI]", "top-1", "regret@1", "regret@3", "NDCG@3",
    "Kendall", "w. tau", "pooled ρ", "covered", "p vs above",
]


def _display_cells(row: pd.Series) -> list[str]:
    return [
        str(row["rank"]),
        _label(row),
        _with_ci(row),
        _number(row["top1_rate"], 2),
        _number(row["regret@1"]),
        _number(row["regret@3"]),
        _number(row["ndcg@3"]),
        _number(row["kendall"]),
        _number(row["weighted_tau"]),
        _number(row["pooled_spearman"]),
        row["targets_covered"],
        _significance(row["sig"]),
    ]


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(
    tables: dict[TableKey, pd.DataFrame], problems: Sequence[tuple[Path, str]] = ()
) -> str:
    """The README.md text: the explanation, one table per setting, notes, skipped files."""
    lines = ["# transferbench leaderboard", ""]
    for paragraph in EXPLANATION:
        lines += [paragraph, ""]
    if not tables:
        lines += ["No valid result files yet.", ""]
    for key, table in tables.items():
        lines += [f"## {_title(key)}", ""]
        lines.append("| " + " | ".join(DISPLAY_HEADERS) + " |")
        lines.append("|" + "|".join("---" if h == "indicator" else "---:" for h in DISPLAY_HEADERS) + "|")
        for _, row in table.iterrows():
            lines.append("| " + " | ".join(_markdown_cell(c) for c in _display_cells(row)) + " |")
        lines.append("")
        for note in table.attrs.get("notes", []):
            lines.append(f"Note: {note}")
        if table.attrs.get("notes"):
            lines.append("")
    if problems:
        lines += ["## Skipped result files", ""]
        for path, reason in sorted(problems, key=lambda p: str(p[0])):
            lines.append(f"- `{_shown_path(path)}`: {reason}")
        lines.append("")
    return "\n".join(lines)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _json_value(value.item())
    return value


def _tables_json(
    tables: dict[TableKey, pd.DataFrame], problems: Sequence[tuple[Path, str]] = ()
) -> dict[str, Any]:
    return {
        "leaderboard_version": LEADERBOARD_VERSION,
        "columns": COLUMNS,
        "tables": [
            {
                "suite": suite,
                "backbone": backbone,
                "transfer_kind": kind,
                "notes": list(table.attrs.get("notes", [])),
                "rows": [
                    {column: _json_value(row[column]) for column in COLUMNS}
                    for _, row in table.iterrows()
                ],
            }
            for (suite, backbone, kind), table in tables.items()
        ],
        "skipped": [
            {"path": _shown_path(path), "reason": reason}
            for path, reason in sorted(problems, key=lambda p: str(p[0]))
        ],
    }


def leaderboard_json(
    results: Iterable[ResultFile], problems: Sequence[tuple[Path, str]] = ()
) -> dict[str, Any]:
    """The leaderboard as JSON-ready data (NaN as None): {leaderboard_version, columns,
    tables: [{suite, backbone, transfer_kind, notes, rows: [{column: value}]}], skipped}."""
    return _tables_json(build_tables(results), problems)


def leaderboard_csv(tables: dict[TableKey, pd.DataFrame]) -> str:
    """All tables stacked, with suite, backbone and transfer_kind as the first columns."""
    frames = []
    for (suite, backbone, kind), table in tables.items():
        frame = table.copy()
        frame.insert(0, "transfer_kind", kind)
        frame.insert(0, "backbone", backbone)
        frame.insert(0, "suite", suite)
        frames.append(frame)
    header = ["suite", "backbone", "transfer_kind", *COLUMNS]
    stacked = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=header)
    return stacked.to_csv(index=False, lineterminator="\n", float_format="%.6g")


def write_leaderboard(
    results: Iterable[ResultFile],
    leaderboard_dir: Path,
    problems: Sequence[tuple[Path, str]] = (),
) -> list[Path]:
    """Write README.md, leaderboard.csv and leaderboard.json atomically; return their paths.

    No timestamps: rebuilding from the same results gives byte-identical files.
    """
    tables = build_tables(results)
    directory = Path(leaderboard_dir)
    outputs = {
        "README.md": render_markdown(tables, problems),
        "leaderboard.csv": leaderboard_csv(tables),
        "leaderboard.json": json.dumps(
            _tables_json(tables, problems), indent=2, allow_nan=False, ensure_ascii=False
        )
        + "\n",
    }
    paths = []
    for name, text in outputs.items():
        path = directory / name
        atomic_write_bytes(path, text.encode("utf-8"))
        paths.append(path)
    return paths


def render_rich(tables: dict[TableKey, pd.DataFrame], console: Any) -> None:
    """Print one rich Table per setting: CI as `0.41 [0.12, 0.66]`, baselines dimmed, `*` for
    p < 0.05 against the row above."""
    from rich.table import Table

    if not tables:
        console.print("No valid result files.")
    for key, table in tables.items():
        view = Table(title=_title(key), caption="* p < 0.05 against the row above (paired sign-flip test)")
        for header in DISPLAY_HEADERS:
            view.add_column(header, justify="left" if header == "indicator" else "right")
        for _, row in table.iterrows():
            view.add_row(*_display_cells(row), style="dim" if row["baseline"] else None)
        console.print(view)
        for note in table.attrs.get("notes", []):
            console.print(f"note: {note}", markup=False)
