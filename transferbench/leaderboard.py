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
import webbrowser
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from transferbench.evaluation import paired_test
from transferbench.plots import CAPTIONS, PLOT_KINDS, plot_filename, setting_plots
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
PLOT_TITLES = {"transfer": "measured transfer", "scatter": "scores vs transfer", "spearman": "per-target ρ"}
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


def _table(ordered: Sequence[ResultFile]) -> pd.DataFrame:
    """The table of one setting's results, already in rank order."""
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


def _settings(results: Iterable[ResultFile]) -> dict[TableKey, tuple[list[ResultFile], list[str]]]:
    """(suite, backbone, transfer_kind) -> (deduplicated results in rank order, notes), keys sorted."""
    groups: dict[TableKey, list[ResultFile]] = {}
    for result in results:
        groups.setdefault((result.suite, result.backbone, result.transfer_kind), []).append(result)
    settings = {}
    for key in sorted(groups):
        kept, notes = _deduplicate(groups[key])
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
    tables: dict[TableKey, pd.DataFrame],
    problems: Sequence[tuple[Path, str]] = (),
    plot_links: dict[TableKey, dict[str, str]] | None = None,
) -> str:
    """The README.md text: the explanation, one table per setting, notes, skipped files.

    `plot_links`: setting -> {plot kind: relative path of its PNG}, linked under the table.
    """
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
        key: {kind: f"plots/{plot_filename(*key, kind)}" for kind in images} for key, images in plots.items()
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
    paths = []
    for key, images in plots.items():
        for kind, png in images.items():
            path = directory / plot_links[key][kind]
            atomic_write_bytes(path, png)
            paths.append(path)
    for stale in sorted((directory / "plots").glob("*.png")):
        if stale not in paths:
            stale.unlink()
    written = []
    for name, text in outputs.items():
        path = directory / name
        atomic_write_bytes(path, text.encode("utf-8"))
        written.append(path)
    return written + paths


# ---------------------------------------------------------------------------------------------
# HTML: one self-contained file (inline CSS and JS, plots as data: URIs), no network.

# Per display column: the key used in `#sort=<key>`, its value type, and the first sort
# direction on click (the better end first: high correlations, low regret and p).
HTML_COLUMNS = [
    ("rank", "number", "asc"),
    ("indicator", "text", "asc"),
    ("mean_spearman", "number", "desc"),
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
    value = _json_value(row[key])
    return "" if value is None else repr(value)


def _html_table(table: pd.DataFrame) -> list[str]:
    lines = ['<table class="board">', "<thead><tr>"]
    for header, (key, kind, first) in zip(DISPLAY_HEADERS, HTML_COLUMNS):
        css = ' class="text"' if kind == "text" else ""
        lines.append(
            f'<th scope="col"{css} data-key="{html.escape(key)}" data-type="{kind}" data-first="{first}">'
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
        anchor = "setting-" + plot_filename(*key, "table").removesuffix(".png")
        lines.append(f'<section id="{html.escape(anchor)}">')
        lines.append(f"<h2>{html.escape(_title(key))}</h2>")
        lines += _html_table(table)
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
