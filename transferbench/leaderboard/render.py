"""The leaderboard's text renderers: Markdown (leaderboard/README.md), CSV, JSON and the terminal table.

Rendering is deterministic: the same results give byte-identical files. Names and notes come from
submissions (untrusted): Markdown output escapes them (`markdown_text`), the terminal prints them
literally. The HTML page is in `transferbench.leaderboard.page`.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from transferbench.leaderboard.tables import (
    COLUMNS, LEADERBOARD_VERSION, SIGNIFICANCE_LEVEL, TableKey, table_settings, shown_path, grouped_tables, build_tables,
)
from transferbench.evaluation.results import ResultFile
from transferbench.leaderboard.plots import PLOT_KINDS
from transferbench.leaderboard.pooled import (
    POOLED_COLUMNS, PooledKey, backbone_column, pooled_description, pooled_json, pooled_tables, shown_pooled,
    single_backbone_lines,
)

PLOT_TITLES = {"transfer": "measured transfer", "scatter": "scores vs transfer", "spearman": "per-target ρ"}
EXPLANATION = (
    "Each row is one indicator; `mean ρ` is the mean over target tasks of the Spearman correlation "
    "between the indicator's scores and the measured transfer from every source task, with a "
    "bootstrap 95% CI over targets (higher is better); top-1 = share of targets whose best source "
    "is the indicator's first choice; regret@k = relative transfer lost by choosing among the "
    "indicator's top k (lower is better); NDCG@3, Kendall tau-b, weighted tau are per-target means; "
    "pooled = one Spearman over all pairs; covered = targets with enough valid, non-constant data.",
    "`p vs above` = two-sided paired sign-flip test of the per-target Spearman against the row "
    "ranked just above; `*` marks p < 0.05. Rows marked (baseline) are reference indicators. "
    "✓ marks a row the board re-scored from its indicator's code, sealed, and found the file's scores "
    "(`transferbench leaderboard --verify`); (unverified) one it could not, with the reason under the table.",
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


VERIFIED_MARK = "✓"
"""Shown after a row the board re-scored from its indicator's code with the file's scores."""


def _verified_mark(row: pd.Series) -> str:
    """` ✓` (verified), ` (unverified)` (checked, not verified: a note says why) or '' (not checked)."""
    verified = row.get("verified")
    return "" if verified is None or verified != verified else f" {VERIFIED_MARK}" if verified else " (unverified)"


def _label(row: pd.Series) -> str:
    return (row["indicator"] + (" (baseline)" if row["baseline"] else "") + (" (local)" if row["local"] else "")
            + _verified_mark(row))


def _title(key: TableKey) -> str:
    return f"suite {key.suite} · backbone {key.backbone} · transfer {key.transfer_kind} · reference {key.reference}"


DISPLAY_HEADERS = [
    "#", "indicator", "mean ρ [95% CI]", "perm. p", "rank 95%", "within ρ", "across ρ", "partial ρ",
    "top-1", "regret@1", "regret@3", "NDCG@3", "Kendall", "w. tau", "pooled ρ", "covered", "p vs above",
]
RICH_HEADERS = ["#", "indicator", "mean ρ [95% CI]", "rank 95%", "perm. p", "within ρ", "partial ρ",
                "p vs above"]
"""The terminal shows these by default; `--columns all` and --format md|csv|json|html have every column."""
RICH_WIDTH = 100
"""The default terminal table is at most this wide, however wide the terminal."""
RICH_KEEP = ("#", "indicator", "mean ρ [95% CI]")
"""Columns the terminal table always shows, never truncated nor wrapped."""
RICH_DROP_ORDER = ["partial ρ", "within ρ", "perm. p", "p vs above", "rank 95%"]
"""The default columns left out, in this order, while the table is wider than the terminal."""


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


def markdown_text(text: str) -> str:
    """`text` as inert Markdown on one line: whitespace runs (newlines included, which could start a
    heading or end a table row) become one space; a `<` that could open raw HTML (followed by a
    letter, `/`, `!` or `?`, CommonMark 0.31 section 6.6) and an `&` that could start an entity
    become entities, so no tag (`<script>`, `<img onerror=...>`) reaches a renderer that passes raw
    HTML through, while `<0.001` stays readable."""
    text = re.sub(r"&(?=#?\w+;)", "&amp;", " ".join(str(text).split()))
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def _markdown_cell(text: str) -> str:
    """`markdown_text` for a table cell: a `|` is escaped so it cannot split the row."""
    return markdown_text(text).replace("|", "\\|")


def _markdown_code(text: str) -> str:
    """`text` (e.g. a path) as one Markdown code span: fenced by more backticks than it contains, so
    a backtick in it cannot end the span; whitespace runs become one space."""
    text = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_markdown(
    tables: dict[TableKey, pd.DataFrame],
    problems: Sequence[tuple[Path, str]] = (),
    plot_links: dict[TableKey, dict[str, str]] | None = None,
    pooled: dict[PooledKey, pd.DataFrame] | None = None,
) -> str:
    """The README.md text: the explanation, one table per setting, notes, the tables pooled across
    backbones (`pooled`, see `transferbench.leaderboard.pooled`), skipped files.

    `plot_links`: setting -> {plot kind: relative path of its PNG}, linked under the table.
    """
    lines = ["# transferbench leaderboard", ""]
    for paragraph in (*EXPLANATION, FAMILY_EXPLANATION):
        lines += [paragraph, ""]
    if not tables:
        lines += ["No valid result files yet.", ""]
    for key, table in tables.items():
        lines += [f"## {markdown_text(_title(key))}", ""]
        lines.append("| " + " | ".join(DISPLAY_HEADERS) + " |")
        lines.append("|" + "|".join("---" if h == "indicator" else "---:" for h in DISPLAY_HEADERS) + "|")
        for _, row in table.iterrows():
            lines.append("| " + " | ".join(_markdown_cell(c) for c in _display_cells(row)) + " |")
        lines.append("")
        lines += [markdown_text(split_seed_line(table)), ""]
        if table.attrs.get("rank_note"):
            lines += [f"Note: {markdown_text(table.attrs['rank_note'])}", ""]
        for note in table.attrs.get("notes", []):
            lines.append(f"Note: {markdown_text(note)}")
        if table.attrs.get("notes"):
            lines.append("")
        links = (plot_links or {}).get(key, {})
        if links:
            shown = [f"[{PLOT_TITLES[kind]}]({links[kind]})" for kind in PLOT_KINDS if kind in links]
            lines += ["Plots: " + " · ".join(shown), ""]
    if pooled:
        lines += ["## Pooled across backbones", ""]
    if shown_pooled(pooled or {}):
        lines += [POOLED_EXPLANATION, ""]
    for line in single_backbone_lines(pooled or {}):
        lines += [markdown_text(line), ""]
    for key, table in shown_pooled(pooled or {}).items():
        lines += [f"### {markdown_text(pooled_title(key, table))}", ""]
        headers, rows = pooled_cells(table)
        lines.append("| " + " | ".join(_markdown_cell(h) for h in headers) + " |")
        lines.append("|" + "|".join("---" if h == "indicator" else "---:" for h in headers) + "|")
        for cells in rows:
            lines.append("| " + " | ".join(_markdown_cell(c) for c in cells) + " |")
        lines.append("")
        for line in pooled_description(key, table):
            lines.append(f"Note: {markdown_text(line)}")
        lines.append("")
    if problems:
        lines += ["## Skipped result files", ""]
        for path, reason in sorted(problems, key=lambda p: str(p[0])):
            lines.append(f"- {_markdown_code(shown_path(path))}: {markdown_text(reason)}")
        lines.append("")
    return "\n".join(lines)


POOLED_EXPLANATION = (
    "Pooled across backbones: one table per suite and transfer kind over every shipped reference of the "
    "suite, each (backbone, target) one unit. `pooled mean ρ` = mean of the per-target ρ over all units the "
    "indicator covers, with a 95% CI and rank interval from a bootstrap over units and seeds stratified by "
    "backbone; `ρ <backbone>` = the row's mean ρ on that backbone's own table; `MDD vs above` = the paired "
    "minimum detectable difference (alpha 0.05, power 0.8) against the row above over their shared units."
)


def pooled_title(key: PooledKey, table: pd.DataFrame) -> str:
    n = len(table.attrs.get("backbones", []))
    return f"suite {key.suite} · transfer {key.transfer_kind} · pooled across backbones ({n} backbone{'s' if n != 1 else ''})"


def pooled_cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(headers, rows of cells) of a pooled table, as every renderer shows it."""
    backbones = [b["backbone"] for b in table.attrs.get("backbones", [])]
    total = len(backbones)
    headers = ["#", "indicator", "pooled mean ρ [95% CI]", "rank 95%", *(f"ρ {b}" for b in backbones),
               "units", "p vs above", "MDD vs above"]
    rows = []
    for _, row in table.iterrows():
        label = row["indicator"] + (" (baseline)" if row["baseline"] else "")
        if not row["complete"]:
            label += f" ({int(row['backbones_covered'])}/{total} backbones)"
        mean = "–" if math.isnan(row["mean_spearman"]) else (
            f"{row['mean_spearman']:.2f}" + ("" if math.isnan(row["ci_low"]) else f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"))
        rows.append([
            str(row["rank"]), label, mean, _rank_interval(row),
            *(_number(row[backbone_column(b)], 2) for b in backbones),
            str(int(row["units_covered"])), _significance(row["sig"]), _number(row["mdd"], 2),
        ])
    return headers, rows


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _json_value(value.item())
    return value


def tables_json(
    tables: dict[TableKey, pd.DataFrame], problems: Sequence[tuple[Path, str]] = (),
    pooled: dict[PooledKey, pd.DataFrame] | None = None,
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
        "pooled_tables": pooled_json(pooled or {}, _json_value),
        "pooled_notes": single_backbone_lines(pooled or {}),
        "skipped": [
            {"path": shown_path(path), "reason": reason}
            for path, reason in sorted(problems, key=lambda p: str(p[0]))
        ],
    }


def leaderboard_json(
    results: Iterable[ResultFile], problems: Sequence[tuple[Path, str]] = ()
) -> dict[str, Any]:
    """The leaderboard as JSON-ready data (NaN as None): {leaderboard_version, columns,
    tables: [{suite, backbone, transfer_kind, notes, split_seed_tau, split_seed_splits,
    split_seed_reason, rank_resampled, rows: [{column: value}]}], pooled_tables: [{suite,
    transfer_kind, backbones, units, resampled, median_mdd, notes, rows: [{column: value,
    per_backbone: {backbone: mean rho}}]}] (only those of at least two backbones, see
    `transferbench.leaderboard.pooled`), pooled_notes (one line per suite pooled on one backbone
    only), skipped}."""
    settings = table_settings(results)
    return tables_json(grouped_tables(settings), problems, pooled_tables(settings))


CSV_POOLED_COLUMNS = ["table", "units_covered", "backbones_covered", "complete", "mdd"]
"""Trailing columns of the CSV, after `split_seed_tau`: `table` is "backbone" for the rows of a
per-backbone table and "pooled" for those of a pooled table (`transferbench.leaderboard.pooled`),
whose pooled-only columns follow, then one `rho[<backbone>]` column per pooled backbone."""


def _pooled_frame(key: PooledKey, table: pd.DataFrame) -> pd.DataFrame:
    """A shown pooled table as CSV rows: its backbones and references joined by "+" fill the
    backbone and reference columns, so (suite, backbone, transfer_kind, reference) names it."""
    backbones = table.attrs.get("backbones", [])
    frame = table.copy()
    frame.insert(0, "reference", "+".join(b["reference"] for b in backbones))
    frame.insert(0, "transfer_kind", key.transfer_kind)
    frame.insert(0, "backbone", "+".join(b["backbone"] for b in backbones))
    frame.insert(0, "suite", key.suite)
    frame["local"] = False
    frame["table"] = "pooled"
    return frame


def leaderboard_csv(tables: dict[TableKey, pd.DataFrame], pooled: dict[PooledKey, pd.DataFrame] | None = None) -> str:
    """All tables stacked, with suite, backbone, transfer_kind and reference as the first columns
    and the table's split-seed tau (the same on every row of a table) after `COLUMNS`; then the
    pooled tables shown (`shown_pooled`), with `CSV_POOLED_COLUMNS` and a `rho[<backbone>]` column
    per pooled backbone (empty on the rows that lack them)."""
    frames = []
    for (suite, backbone, kind, reference), table in tables.items():
        frame = table.copy()
        frame.insert(0, "reference", reference)
        frame["split_seed_tau"] = table.attrs.get("split_seed_tau", math.nan)
        frame.insert(0, "transfer_kind", kind)
        frame.insert(0, "backbone", backbone)
        frame.insert(0, "suite", suite)
        frame["table"] = "backbone"
        frames.append(frame)
    shown = shown_pooled(pooled or {})
    frames += [_pooled_frame(key, table) for key, table in shown.items()]
    rho = sorted({column for table in shown.values() for column in table.columns
                  if column not in POOLED_COLUMNS}, key=str)
    header = ["suite", "backbone", "transfer_kind", "reference", *COLUMNS, "split_seed_tau", *CSV_POOLED_COLUMNS, *rho]
    stacked = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=header)
    stacked = stacked.reindex(columns=header)
    return stacked.to_csv(index=False, lineterminator="\n", float_format="%.6g")


def _rich_table(key: TableKey, rows: list[list[str]], dim: list[bool], shown: list[int], dropped: list[str]):
    from rich import box
    from rich.table import Table

    sig = DISPLAY_HEADERS.index("p vs above")
    starred = sig in shown and any(cells[sig].endswith("*") for cells in rows)
    caption = [*(["* p < 0.05 against the row above (paired sign-flip test)"] if starred else []),
               *([f"not shown: {', '.join(dropped)} (--columns all, or --format md|csv|json|html)"] if dropped else [])]
    view = Table(title=_title(key), box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False,
                 caption="; ".join(caption) or None, caption_justify="left")
    for index in shown:
        header = DISPLAY_HEADERS[index]
        # the indicator and the mean with its CI are never cut or wrapped: they are what a row says
        whole = header in RICH_KEEP
        longest = max([len(header), *(len(cells[index]) for cells in rows)])
        view.add_column(header, justify="left" if header == "indicator" else "right", no_wrap=whole,
                        min_width=longest if whole else None, overflow="fold")
    for cells, faint in zip(rows, dim):
        view.add_row(*(cells[i] for i in shown), style="dim" if faint else None)
    return view


POOLED_RICH_DROP_ORDER = ["p vs above", "MDD vs above", "units", "rank 95%"]
"""The pooled table's columns left out in the terminal, in this order, while it is wider than it."""


def _rich_pooled_header(header: str) -> str:
    """A pooled table's header on two lines in the terminal (`ρ minilm` -> `ρ` over `minilm`, `p vs
    above` -> `p vs` over `above`), so a column is as wide as its numbers."""
    if header in ("#", "indicator", "units"):
        return header
    if header.endswith(" [95% CI]"):
        return header.replace(" [", "\n[")
    if header.startswith("ρ "):
        return header.replace(" ", "\n", 1)
    first, _, last = header.rpartition(" ")
    return f"{first}\n{last}"


def _rich_pooled_table(key: PooledKey, table: pd.DataFrame, console: Any, width: int):
    """The pooled table for the terminal: no cell wrapped, the columns of `POOLED_RICH_DROP_ORDER`
    left out while it is wider than `width`, and named in the caption."""
    from rich import box
    from rich.measure import Measurement
    from rich.table import Table

    headers, rows = pooled_cells(table)
    dropped: list[str] = []
    while True:
        shown = [i for i, header in enumerate(headers) if header not in dropped]
        sig = headers.index("p vs above")
        starred = sig in shown and any(cells[sig].endswith("*") for cells in rows)
        caption = [*(["* p < 0.05 against the row above (paired sign-flip test over shared units)"] if starred else []),
                   *([f"not shown: {', '.join(dropped)} (--format md|csv|json|html)"] if dropped else [])]
        view = Table(title=pooled_title(key, table), box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False,
                     caption="; ".join(caption) or None, caption_justify="left")
        for index in shown:
            header = headers[index]
            view.add_column(_rich_pooled_header(header), justify="left" if header == "indicator" else "right",
                            no_wrap=True)
        for cells, (_, row) in zip(rows, table.iterrows()):
            view.add_row(*(cells[i] for i in shown), style="dim" if bool(row["baseline"]) else None)
        left = [header for header in POOLED_RICH_DROP_ORDER if header not in dropped]
        if not left or Measurement.get(console, console.options.update_width(10_000), view).maximum <= width:
            return view
        dropped.append(left[0])


def render_rich(tables: dict[TableKey, pd.DataFrame], console: Any, columns: str = "default",
                pooled: dict[PooledKey, pd.DataFrame] | None = None) -> None:
    """Print one rich Table per setting, CI as `0.41 [0.12, 0.66]`, baselines dimmed; then the
    tables pooled across backbones (`pooled`, those `shown_pooled`) with their notes, and one line
    for each suite pooled on a single backbone (`single_backbone_lines`).

    `columns="default"`: the `RICH_HEADERS` columns, minus those of `RICH_DROP_ORDER` (in that
    order) that do not fit `RICH_WIDTH` or the console's width if narrower; the indicator and mean ρ [95% CI] columns are
    never truncated or wrapped. `columns="all"`: every `DISPLAY_HEADERS` column. A caption names
    the columns left out and explains `*` only when a row has one; the split-seed check and the
    notes follow each table, wrapped to at most 100 columns.
    """
    from rich.measure import Measurement

    if not tables:
        console.print("No valid result files.")
    width = min(RICH_WIDTH, console.width)
    for key, table in tables.items():
        rows = [_display_cells(row) for _, row in table.iterrows()]
        dim = [bool(row["baseline"]) for _, row in table.iterrows()]
        headers = list(DISPLAY_HEADERS if columns == "all" else RICH_HEADERS)
        dropped: list[str] = []
        view = _rich_table(key, rows, dim, [DISPLAY_HEADERS.index(h) for h in headers], dropped)
        for header in RICH_DROP_ORDER if columns != "all" else ():
            natural = Measurement.get(console, console.options.update_width(10_000), view).maximum
            if natural <= width:
                break
            headers.remove(header)
            dropped.append(header)
            view = _rich_table(key, rows, dim, [DISPLAY_HEADERS.index(h) for h in headers], dropped)
        console.print(view)
        console.print(textwrap.fill(split_seed_line(table), width=width, subsequent_indent="  "), markup=False)
        if table.attrs.get("rank_note"):
            console.print(textwrap.fill(f"note: {table.attrs['rank_note']}", width=width, subsequent_indent="  "),
                          markup=False)
        for note in table.attrs.get("notes", []):
            console.print(textwrap.fill(f"note: {note}", width=width, subsequent_indent="  "), markup=False)
    for key, table in shown_pooled(pooled or {}).items():
        console.print(_rich_pooled_table(key, table, console, width), width=width)
        for line in pooled_description(key, table):
            console.print(textwrap.fill(f"note: {line}", width=width, subsequent_indent="  "), markup=False)
    for line in single_backbone_lines(pooled or {}):
        console.print(textwrap.fill(line, width=width, subsequent_indent="  "), markup=False)
