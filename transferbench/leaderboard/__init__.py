"""Stage 6, the leaderboard: ranked tables of validated result files, and their renderers.

- `tables`: group result files by setting (suite, backbone, transfer kind, reference),
  deduplicate, rank, and build one pandas DataFrame per setting;
- `render`: Markdown, CSV, JSON and the terminal (rich) table;
- `page`: the self-contained HTML page (frame, CSS and JS are package data under `assets/`);
- `files`: write a leaderboard folder, leaving unchanged files untouched.
"""

from transferbench.leaderboard.files import Written, write_leaderboard
from transferbench.leaderboard.page import open_in_browser, render_html
from transferbench.leaderboard.render import (
    COLUMN_HELP, DISPLAY_HEADERS, RICH_HEADERS, leaderboard_csv, leaderboard_json, render_markdown, render_rich,
    split_seed_line,
)
from transferbench.leaderboard.tables import COLUMNS, LEADERBOARD_VERSION, TableKey, build_tables

__all__ = [
    "COLUMNS", "COLUMN_HELP", "DISPLAY_HEADERS", "LEADERBOARD_VERSION", "RICH_HEADERS", "TableKey", "Written",
    "build_tables", "leaderboard_csv", "leaderboard_json", "open_in_browser", "render_html", "render_markdown",
    "render_rich", "split_seed_line", "write_leaderboard",
]
