"""Stage 6, the leaderboard: rank validated result files, one table per setting.

Results from different suites, backbones or transfer kinds are never ranked together: each
(suite, backbone, transfer_kind) is its own table, ranked by the mean per-target Spearman.
`write_leaderboard` renders README.md, leaderboard.csv, leaderboard.json, a self-contained
index.html (sortable tables, plots embedded) and the plots as PNGs under plots/ (see
`transferbench.plots`) deterministically: the same inputs give byte-identical files.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
import textwrap
import webbrowser
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import pandas as pd

from transferbench.evaluation import paired_test, rank_intervals, split_seed_tau
from transferbench.protocol import TRANSFER_KIND_HELP
from transferbench.plots import CAPTIONS, PLOT_KINDS, plot_filename, setting_plots
from transferbench.results import ResultFile, dataframes, per_seed_frames, result_json
from transferbench.store import atomic_write_many

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
PLOT_TITLES = {"transfer": "measured transfer", "scatter": "scores vs transfer", "spearman": "per-target ρ"}
SIGNIFICANCE_LEVEL = 0.05
LEADERBOARD_VERSION = 2
RANK_BOOTSTRAP = 1000
"""Replicates of the table-level bootstrap over targets and seeds behind the rank intervals."""
RANK_BOOTSTRAP_SEED = 0

EXPLANATION = (
    "Each row is one indicator; `mean ρ` is the mean over target tasks of the Spearman correlation "
    "between the indicator's scores and the measured transfer from every source task, with a "
    "bootstrap 95% CI over targets (higher is better); top-1 = share of targets whose best source "
    "is the indicator's first choice; regret@k = relative transfer lost by choosing among the "
    "indicator's top k (lower is better); NDCG@3, Kendall tau-b, weighted tau are per-target means; "
    "pooled = one Spearman over all pairs; covered = targets with enough valid, non-constant data.",
    "`p vs above` = two-sided paired sign-flip test of the per-target Spearman against the row "
    "ranked just above; `*` marks p < 0.05. Rows marked (baseline) are reference indicators.",
    "`perm. p` = one-sided permutation test of mean ρ against an indicator with no information "
    "(scores shuffled within each target). `rank 95%` = the 95% interval of the row's rank when "
    "targets and prompt-tuning seeds are resampled (bootstrap); `split-seed τ` under a table = "
    "Kendall τ between the rankings computed on two disjoint halves of the seeds (1 = the same "
    "order, near 0 = the order is seed noise).",
)

FAMILY_EXPLANATION = (
    "Sources of the target's own family (e.g. two sentiment tasks) transfer best, so an indicator "
    "that only detects the family already earns a high mean ρ: compare every row with the "
    "`same_family` baseline. `within ρ` (same-family sources only, targets with at least 3 of "
    "them; the number of such targets in brackets), `across ρ` (other-family sources only) and "
    "`partial ρ` (the family indicator controlled) show whether an indicator knows more than the "
    "family."
)

# Tooltip (HTML title attribute) of each display column.
COLUMN_HELP = {
    "rank": "Position by mean ρ (the ranking column).",
    "indicator": "The indicator and its non-default parameters; (baseline) marks reference indicators.",
    "mean_spearman": "Mean over targets of the Spearman ρ between the indicator's scores and the measured "
                     "transfer over the sources, with a bootstrap 95% CI over targets. Higher is better.",
    "permutation_p": "One-sided permutation p of mean ρ against no information: the scores shuffled within "
                     "each target, seeded. Small = better than chance.",
    "rank_interval": "95% interval of this row's rank in a bootstrap over targets and seeds (1 = best). "
                     "Overlapping intervals: the order of those rows is not established.",
    "within_family": "Mean ρ over the sources of the target's own family only (targets with >= 3 such "
                     "sources; their number in brackets). Does the indicator rank tasks inside a family?",
    "across_family": "Mean ρ over the sources of other families only (targets with >= 3 such sources; "
                     "their number in brackets).",
    "partial_spearman": "Mean over targets of the Spearman partial ρ with the same-family indicator "
                        "controlled: what the scores know beyond the family.",
    "top1_rate": "Share of targets whose best source is the indicator's first choice.",
    "regret@1": "Relative transfer lost by taking the indicator's first choice instead of the best "
                "source (lower is better).",
    "regret@3": "Relative transfer lost by taking the best of the indicator's top 3 (lower is better).",
    "ndcg@3": "Mean NDCG@3 with the measured transfer, min-max scaled per target, as relevance.",
    "kendall": "Mean per-target Kendall τ-b.",
    "weighted_tau": "Mean per-target weighted Kendall τ (errors at the top weigh most).",
    "pooled_spearman": "One Spearman ρ over all (source, target) pairs pooled (secondary).",
    "targets_covered": "Targets with enough valid, non-constant data to be scored.",
    "sig": "Two-sided paired sign-flip test of the per-target ρ against the row ranked just above; "
           "* = p < 0.05.",
}



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
    frame.attrs.update(stability)
    return frame


def _settings(results: Iterable[ResultFile]) -> dict[TableKey, tuple[list[ResultFile], list[str]]]:
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
                 *notes]
        settings[key] = (_ranked(kept), notes)
    return settings


def build_tables(results: Iterable[ResultFile]) -> dict[TableKey, pd.DataFrame]:
    """One ranked table per (suite, backbone, transfer_kind), keys in sorted order.

    Columns are `COLUMNS`. If a table would hold two results of the same indicator name and
    params, only the newest (manifest `created_at`) is kept; `table.attrs["notes"]` says so.
    """
    return _tables(_settings(results))


def _tables(settings: dict[TableKey, tuple[list[ResultFile], list[str]]]) -> dict[TableKey, pd.DataFrame]:
    tables = {}
    for key, (ranked, notes) in settings.items():
        table = _table(ranked)
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


def _p_value(p: float) -> str:
    if math.isnan(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _rank_interval(row: pd.Series) -> str:
    return f"{int(row['rank_low'])}–{int(row['rank_high'])}"


def _family_rho(row: pd.Series, column: str) -> str:
    if math.isnan(row[column]):
        return "–"
    return f"{row[column]:.2f} ({int(row[column + '_targets'])})"


def split_seed_line(table: pd.DataFrame) -> str:
    """The split-seed check printed under a table, e.g. `split-seed τ = 0.71 (3 splits of 3 seeds)`."""
    tau = table.attrs.get("split_seed_tau", math.nan)
    if math.isnan(tau):
        reason = table.attrs.get("split_seed_reason") or "not computed"
        return f"split-seed τ: – ({reason})"
    splits = table.attrs.get("split_seed_splits", 0)
    return f"split-seed τ = {tau:.2f} (Kendall τ between the rankings on two disjoint seed halves, mean of {splits} split{'s' if splits != 1 else ''})"


def _significance(p: float) -> str:
    if math.isnan(p):
        return ""
    return f"{p:.3f}" + (" *" if p < SIGNIFICANCE_LEVEL else "")


def _label(row: pd.Series) -> str:
    return row["indicator"] + (" (baseline)" if row["baseline"] else "")


def _title(key: TableKey) -> str:
    return f"suite {key.suite} · backbone {key.backbone} · transfer {key.transfer_kind} · reference {key.reference}"


DISPLAY_HEADERS = [
    "#", "indicator", "mean ρ [95% CI]", "perm. p", "rank 95%", "within ρ", "across ρ", "partial ρ",
    "top-1", "regret@1", "regret@3", "NDCG@3", "Kendall", "w. tau", "pooled ρ", "covered", "p vs above",
]
RICH_HEADERS = ["#", "indicator", "mean ρ [95% CI]", "perm. p", "rank 95%", "within ρ", "partial ρ",
                "p vs above"]
"""The terminal shows these (about 100 characters wide); --format md|csv|json|html has every column."""


def _display_cells(row: pd.Series) -> list[str]:
    return [
        str(row["rank"]),
        _label(row),
        _with_ci(row),
        _p_value(row["permutation_p"]),
        _rank_interval(row),
        _family_rho(row, "within_family"),
        _family_rho(row, "across_family"),
        _number(row["partial_spearman"], 2),
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
    tables: dict[TableKey, pd.DataFrame],
    problems: Sequence[tuple[Path, str]] = (),
    plot_links: dict[TableKey, dict[str, str]] | None = None,
) -> str:
    """The README.md text: the explanation, one table per setting, notes, skipped files.

    `plot_links`: setting -> {plot kind: relative path of its PNG}, linked under the table.
    """
    lines = ["# transferbench leaderboard", ""]
    for paragraph in (*EXPLANATION, FAMILY_EXPLANATION):
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
        lines += [split_seed_line(table), ""]
        if table.attrs.get("rank_note"):
            lines += [f"Note: {table.attrs['rank_note']}", ""]
        for note in table.attrs.get("notes", []):
            lines.append(f"Note: {note}")
        if table.attrs.get("notes"):
            lines.append("")
        links = (plot_links or {}).get(key, {})
        if links:
            shown = [f"[{PLOT_TITLES[kind]}]({links[kind]})" for kind in PLOT_KINDS if kind in links]
            lines += ["Plots: " + " · ".join(shown), ""]
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
                "reference": reference,
                "notes": list(table.attrs.get("notes", [])),
                "split_seed_tau": _json_value(table.attrs.get("split_seed_tau", math.nan)),
                "split_seed_splits": table.attrs.get("split_seed_splits", 0),
                "split_seed_reason": table.attrs.get("split_seed_reason", ""),
                "rank_resampled": table.attrs.get("rank_resampled", ""),
                "rows": [
                    {column: _json_value(row[column]) for column in COLUMNS}
                    for _, row in table.iterrows()
                ],
            }
            for (suite, backbone, kind, reference), table in tables.items()
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
    tables: [{suite, backbone, transfer_kind, notes, split_seed_tau, split_seed_splits,
    split_seed_reason, rank_resampled, rows: [{column: value}]}], skipped}."""
    return _tables_json(build_tables(results), problems)


def leaderboard_csv(tables: dict[TableKey, pd.DataFrame]) -> str:
    """All tables stacked, with suite, backbone and transfer_kind as the first columns and the
    table's split-seed tau (the same on every row of a table) as the last."""
    frames = []
    for (suite, backbone, kind, reference), table in tables.items():
        frame = table.copy()
        frame.insert(0, "reference", reference)
        frame["split_seed_tau"] = table.attrs.get("split_seed_tau", math.nan)
        frame.insert(0, "transfer_kind", kind)
        frame.insert(0, "backbone", backbone)
        frame.insert(0, "suite", suite)
        frames.append(frame)
    header = ["suite", "backbone", "transfer_kind", "reference", *COLUMNS, "split_seed_tau"]
    stacked = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=header)
    return stacked.to_csv(index=False, lineterminator="\n", float_format="%.6g")


def _setting_plots(settings: dict[TableKey, tuple[list[ResultFile], list[str]]]) -> dict[TableKey, dict[str, bytes]]:
    return {key: setting_plots(ranked) for key, (ranked, _) in settings.items() if ranked}


def write_leaderboard(
    results: Iterable[ResultFile],
    leaderboard_dir: Path,
    problems: Sequence[tuple[Path, str]] = (),
) -> list[Path]:
    """Write README.md, leaderboard.csv, leaderboard.json, index.html and the plots (under
    `plots/`, see `transferbench.plots`) atomically; return their paths in that order.

    No timestamps: rebuilding from the same results gives byte-identical files. PNGs under
    `plots/` that belong to no current setting are removed (the folder is generated).
    """
    settings = _settings(results)
    tables = _tables(settings)
    plots = _setting_plots(settings)
    directory = Path(leaderboard_dir)
    plot_links = {
        key: {kind: f"plots/{plot_filename(key.suite, key.plot_stem(), key.transfer_kind, kind)}" for kind in images}
        for key, images in plots.items()
    }
    outputs = {
        "README.md": render_markdown(tables, problems, plot_links),
        "leaderboard.csv": leaderboard_csv(tables),
        "leaderboard.json": json.dumps(
            _tables_json(tables, problems), indent=2, allow_nan=False, ensure_ascii=False
        )
        + "\n",
        "index.html": _render_html(tables, plots, problems),
    }
    images = {directory / plot_links[key][kind]: png for key, pngs in plots.items() for kind, png in pngs.items()}
    pages = {directory / name: text.encode("utf-8") for name, text in outputs.items()}
    atomic_write_many({**images, **pages})  # a full disk leaves the previous board whole
    for stale in sorted((directory / "plots").glob("*.png")):
        if stale not in images:
            stale.unlink()
    return list(pages) + list(images)


# ---------------------------------------------------------------------------------------------
# HTML: one self-contained file (inline CSS and JS, plots as data: URIs), no network.

# Per display column: the key used in `#sort=<key>`, its value type, and the first sort
# direction on click (the better end first: high correlations, low regret and p).
HTML_COLUMNS = [
    ("rank", "number", "asc"),
    ("indicator", "text", "asc"),
    ("mean_spearman", "number", "desc"),
    ("permutation_p", "number", "asc"),
    ("rank_interval", "number", "asc"),
    ("within_family", "number", "desc"),
    ("across_family", "number", "desc"),
    ("partial_spearman", "number", "desc"),
    ("top1_rate", "number", "desc"),
    ("regret@1", "number", "asc"),
    ("regret@3", "number", "asc"),
    ("ndcg@3", "number", "desc"),
    ("kendall", "number", "desc"),
    ("weighted_tau", "number", "desc"),
    ("pooled_spearman", "number", "desc"),
    ("targets_covered", "number", "desc"),
    ("sig", "number", "asc"),
]

_HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1300px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
p.explain { color: #444; max-width: 70rem; font-size: 0.92rem; }
code { background: #f2f2f2; padding: 0 0.2em; border-radius: 3px; }
table.board { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
table.board th, table.board td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #e3e3e3; text-align: right;
       white-space: nowrap; }
table.board th.text, table.board td.text { text-align: left; }
table.board thead th { background: #f6f6f6; position: sticky; top: 0; }
table.board th button { all: unset; cursor: pointer; font-weight: 600; }
table.board th button:focus-visible { outline: 2px solid #1f77b4; }
table.board th button::after { content: " \\2195"; color: #aaa; font-weight: normal; }
table.board th[aria-sort="ascending"] button::after { content: " \\25B2"; color: #222; }
table.board th[aria-sort="descending"] button::after { content: " \\25BC"; color: #222; }
table.board tbody tr:hover { background: #f3f8fc; }
table.board tr.baseline { color: #777; }
span.mark { color: #777; font-size: 0.85em; }
table.board th[title] button { text-decoration: underline dotted #999; }
p.stability { font-size: 0.9rem; margin: 0.2rem 0; }
td.sig-yes { font-weight: 600; }
.note { color: #8a5300; font-size: 0.9rem; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85rem; }
ul.skipped li { font-size: 0.9rem; }
"""

# Click a header to sort by it (again to reverse); `#sort=<key>[:asc|:desc]` in the URL sorts
# every table on load, so a sorted view can be linked (and tested in a headless browser).
_HTML_SCRIPT = """
(function () {
  "use strict";
  function cellValue(row, column) {
    return row.cells[column].getAttribute("data-value");
  }
  function compare(a, b, column, numeric, direction) {
    var x = cellValue(a, column), y = cellValue(b, column);
    if (x === "" || y === "") {  // missing values always last
      if (x === y) { return Number(a.dataset.rank) - Number(b.dataset.rank); }
      return x === "" ? 1 : -1;
    }
    var order = numeric ? Number(x) - Number(y) : (x < y ? -1 : (x > y ? 1 : 0));
    if (order === 0) { return Number(a.dataset.rank) - Number(b.dataset.rank); }
    return direction === "asc" ? order : -order;
  }
  function sortTable(table, column, direction) {
    var header = table.tHead.rows[0].cells[column];
    var numeric = header.dataset.type === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) { return compare(a, b, column, numeric, direction); });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", direction === "asc" ? "ascending" : "descending");
  }
  function onClick(event) {
    var th = event.currentTarget.closest("th");
    var current = th.getAttribute("aria-sort");
    var direction = current === "ascending" ? "desc" : (current === "descending" ? "asc" : th.dataset.first);
    sortTable(th.closest("table"), th.cellIndex, direction);
  }
  function sortFromHash() {
    var match = /(?:^#|&)sort=([^:&]+)(?::(asc|desc))?/.exec(window.location.hash);
    if (!match) { return; }
    var key = decodeURIComponent(match[1]);
    document.querySelectorAll("table.board").forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
        if (th.dataset.key === key) { sortTable(table, th.cellIndex, match[2] || th.dataset.first); }
      });
    });
  }
  document.querySelectorAll("table.board th button").forEach(function (button) {
    button.addEventListener("click", onClick);
  });
  window.addEventListener("hashchange", sortFromHash);
  sortFromHash();
})();
"""


def _inline_markdown(text: str) -> str:
    """Escape `text` for HTML, turning Markdown `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _sort_value(row: pd.Series, key: str) -> str:
    """The machine-readable value a column sorts by ('' = missing, sorted last)."""
    if key == "indicator":
        return _label(row)
    if key == "targets_covered":
        return str(row["targets_covered"]).split("/")[0]
    if key == "rank_interval":  # by the upper end, then the lower: the surest first
        return repr(int(row["rank_high"]) + int(row["rank_low"]) / 1000)
    value = _json_value(row[key])
    return "" if value is None else repr(value)


def _html_table(table: pd.DataFrame) -> list[str]:
    lines = ['<table class="board">', "<thead><tr>"]
    for header, (key, kind, first) in zip(DISPLAY_HEADERS, HTML_COLUMNS):
        css = ' class="text"' if kind == "text" else ""
        lines.append(
            f'<th scope="col"{css} data-key="{html.escape(key)}" data-type="{kind}" data-first="{first}"'
            f' title="{html.escape(COLUMN_HELP[key])}">'
            f'<button type="button">{html.escape(header)}</button></th>'
        )
    lines.append("</tr></thead>")
    lines.append("<tbody>")
    for _, row in table.iterrows():
        baseline = bool(row["baseline"])
        cells = []
        for text, (key, kind, _) in zip(_display_cells(row), HTML_COLUMNS):
            classes = ["text"] if kind == "text" else []
            if key == "sig" and text.endswith("*"):
                classes.append("sig-yes")
            css = f' class="{" ".join(classes)}"' if classes else ""
            shown = html.escape(text)
            if key == "indicator" and baseline:
                shown = html.escape(row["indicator"]) + ' <span class="mark">(baseline)</span>'
            cells.append(f'<td{css} data-value="{html.escape(_sort_value(row, key))}">{shown}</td>')
        css = ' class="baseline"' if baseline else ""
        lines.append(
            f'<tr{css} data-rank="{int(row["rank"])}" data-indicator="{html.escape(row["indicator"])}">'
            + "".join(cells) + "</tr>"
        )
    lines.append("</tbody></table>")
    return lines


def _render_html(
    tables: dict[TableKey, pd.DataFrame],
    plots: dict[TableKey, dict[str, bytes]],
    problems: Sequence[tuple[Path, str]] = (),
) -> str:
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>transferbench leaderboard</title>",
        f"<style>{_HTML_STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>transferbench leaderboard</h1>",
    ]
    for paragraph in EXPLANATION:
        lines.append(f'<p class="explain">{_inline_markdown(paragraph)}</p>')
    lines.append(
        '<p class="explain">Click a column header to sort by it (click again to reverse); '
        "<code>p vs above</code> always refers to the ranked order (<code>#</code>).</p>"
    )
    if not tables:
        lines.append("<p>No valid result files yet.</p>")
    for key, table in tables.items():
        anchor = "setting-" + plot_filename(key.suite, key.plot_stem(), key.transfer_kind, "table").removesuffix(".png")
        lines.append(f'<section id="{html.escape(anchor)}">')
        lines.append(f"<h2>{html.escape(_title(key))}</h2>")
        lines += _html_table(table)
        lines.append(f'<p class="explain">{_inline_markdown(FAMILY_EXPLANATION)}</p>')
        lines.append(f'<p class="stability">{html.escape(split_seed_line(table))}</p>')
        if table.attrs.get("rank_note"):
            lines.append(f'<p class="note">Note: {html.escape(table.attrs["rank_note"])}</p>')
        for note in table.attrs.get("notes", []):
            lines.append(f'<p class="note">Note: {html.escape(note)}</p>')
        for kind, png in plots.get(key, {}).items():
            data = base64.b64encode(png).decode("ascii")
            alt = f"{PLOT_TITLES[kind]}: {_title(key)}"
            lines.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
                f"<figcaption>{html.escape(CAPTIONS[kind])}</figcaption></figure>"
            )
        lines.append("</section>")
    if problems:
        lines.append("<h2>Skipped result files</h2>")
        lines.append('<ul class="skipped">')
        for path, reason in sorted(problems, key=lambda p: str(p[0])):
            lines.append(f"<li><code>{html.escape(_shown_path(path))}</code>: {html.escape(reason)}</li>")
        lines.append("</ul>")
    lines += [f"<script>{_HTML_SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(lines)


def render_html(results: Iterable[ResultFile], problems: Sequence[tuple[Path, str]] = ()) -> str:
    """The leaderboard as one self-contained HTML page: every table of README.md (sortable by
    clicking a column header, or by `#sort=<column key>[:asc|:desc]` in the URL), the plots
    embedded as data: URIs, the skipped files. Works offline and when copied anywhere."""
    settings = _settings(results)
    tables = _tables(settings)
    return _render_html(tables, _setting_plots(settings), problems)


def open_in_browser(path: Path) -> bool:
    """Open `path` (e.g. leaderboard/index.html) in the user's web browser; False when no
    browser is available (e.g. on a headless server)."""
    try:
        return bool(webbrowser.open(Path(path).resolve().as_uri()))
    except webbrowser.Error:
        return False


def render_rich(tables: dict[TableKey, pd.DataFrame], console: Any) -> None:
    """Print one rich Table per setting with the `RICH_HEADERS` columns (about 100 characters
    wide): CI as `0.41 [0.12, 0.66]`, baselines dimmed, `*` for p < 0.05 against the row above;
    the split-seed check under each table. The other columns are in --format md|csv|json|html."""
    from rich import box
    from rich.table import Table

    if not tables:
        console.print("No valid result files.")
    shown = [DISPLAY_HEADERS.index(header) for header in RICH_HEADERS]
    for key, table in tables.items():
        view = Table(
            title=_title(key), box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False,
            caption="* p < 0.05 against the row above (paired sign-flip test); "
                    "more columns: --format md|csv|json|html",
        )
        for header in RICH_HEADERS:
            view.add_column(header, justify="left" if header == "indicator" else "right")
        for _, row in table.iterrows():
            cells = _display_cells(row)
            view.add_row(*(cells[i] for i in shown), style="dim" if row["baseline"] else None)
        console.print(view)
        console.print(split_seed_line(table), markup=False)
        if table.attrs.get("rank_note"):
            console.print(f"note: {table.attrs['rank_note']}", markup=False)
        for note in table.attrs.get("notes", []):
            # wrapped to the table's 100 columns, whatever the terminal's width
            console.print(textwrap.fill(f"note: {note}", width=100, subsequent_indent="  "), markup=False)
