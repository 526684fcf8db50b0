"""The leaderboard's HTML page: one self-contained index.html (sortable tables, plots embedded).

The page's frame, style sheet and script are package data files under `assets/` (page.html,
board.css, board.js); this module fills in the tables, notes and plots.
"""

from __future__ import annotations

import base64
import html
import re
import webbrowser
from importlib import resources
from pathlib import Path
from string import Template
from typing import Iterable, Sequence

import pandas as pd

from transferbench.leaderboard.pooled import (
    PooledKey, pooled_description, pooled_tables, shown_pooled, single_backbone_lines,
)
from transferbench.leaderboard.render import (
    COLUMN_HELP, DISPLAY_HEADERS, EXPLANATION, FAMILY_EXPLANATION, PLOT_TITLES, POOLED_EXPLANATION, _display_cells,
    _json_value, _label, _title, _verified_mark, pooled_cells, pooled_title, split_seed_line,
)
from transferbench.evaluation.results import ResultFile
from transferbench.leaderboard.plots import CAPTIONS, plot_filename, setting_plots
from transferbench.leaderboard.tables import TableKey, table_settings, shown_path, grouped_tables

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


def plots_by_setting(settings: dict[TableKey, tuple[list[ResultFile], list[str]]]) -> dict[TableKey, dict[str, bytes]]:
    return {key: setting_plots(ranked) for key, (ranked, _) in settings.items() if ranked}


def _asset(name: str) -> str:
    """A file of the page's frame, style sheet or script, read from the installed package's data."""
    return resources.files("transferbench.leaderboard").joinpath("assets", name).read_text(encoding="utf-8")


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
            if key == "indicator":
                marks = [mark for mark, on in (("baseline", baseline), ("local", row["local"])) if on]
                shown = (html.escape(row["indicator"]) + "".join(f' <span class="mark">({mark})</span>' for mark in marks)
                         + (f' <span class="mark">{html.escape(_verified_mark(row).strip())}</span>'
                            if _verified_mark(row) else ""))
            cells.append(f'<td{css} data-value="{html.escape(_sort_value(row, key))}">{shown}</td>')
        css = ' class="baseline"' if baseline else ""
        lines.append(
            f'<tr{css} data-rank="{int(row["rank"])}" data-indicator="{html.escape(row["indicator"])}">'
            + "".join(cells) + "</tr>"
        )
    lines.append("</tbody></table>")
    return lines


def render_page(
    tables: dict[TableKey, pd.DataFrame],
    plots: dict[TableKey, dict[str, bytes]],
    problems: Sequence[tuple[Path, str]] = (),
    pooled: dict[PooledKey, pd.DataFrame] | None = None,
) -> str:
    lines = []
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
    if pooled:
        lines.append('<section id="pooled"><h2>Pooled across backbones</h2>')
        if shown_pooled(pooled):
            lines.append(f'<p class="explain">{_inline_markdown(POOLED_EXPLANATION)}</p>')
        for line in single_backbone_lines(pooled):
            lines.append(f'<p class="note">{html.escape(line)}</p>')
        lines.append("</section>")
    for key, table in shown_pooled(pooled or {}).items():
        lines.append(f'<section id="pooled-{html.escape(key.suite)}-{html.escape(key.transfer_kind)}">')
        lines.append(f"<h3>{html.escape(pooled_title(key, table))}</h3>")
        headers, rows = pooled_cells(table)
        lines.append('<table class="pooled"><thead><tr>'
                     + "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers) + "</tr></thead><tbody>")
        for cells in rows:
            lines.append("<tr>" + "".join(
                ('<td class="text">' if i == 1 else "<td>") + f"{html.escape(c)}</td>" for i, c in enumerate(cells)) + "</tr>")
        lines.append("</tbody></table>")
        for line in pooled_description(key, table):
            lines.append(f'<p class="note">Note: {html.escape(line)}</p>')
        lines.append("</section>")
    if problems:
        lines.append("<h2>Skipped result files</h2>")
        lines.append('<ul class="skipped">')
        for path, reason in sorted(problems, key=lambda p: str(p[0])):
            lines.append(f"<li><code>{html.escape(shown_path(path))}</code>: {html.escape(reason)}</li>")
        lines.append("</ul>")
    return Template(_asset("page.html")).substitute(style=_asset("board.css"), script=_asset("board.js"),
                                                    body="\n".join(lines))


def render_html(results: Iterable[ResultFile], problems: Sequence[tuple[Path, str]] = ()) -> str:
    """The leaderboard as one self-contained HTML page: every table of README.md (sortable by
    clicking a column header, or by `#sort=<column key>[:asc|:desc]` in the URL), the plots
    embedded as data: URIs, the skipped files. Works offline and when copied anywhere."""
    settings = table_settings(results)
    tables = grouped_tables(settings)
    return render_page(tables, plots_by_setting(settings), problems, pooled_tables(settings))


def open_in_browser(path: Path) -> bool:
    """Open `path` (e.g. leaderboard/index.html) in the user's web browser; False when no
    browser is available (e.g. on a headless server)."""
    try:
        return bool(webbrowser.open(Path(path).resolve().as_uri()))
    except webbrowser.Error:
        return False
