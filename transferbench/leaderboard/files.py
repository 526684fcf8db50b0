"""Writing a leaderboard folder: README.md, leaderboard.csv, leaderboard.json, index.html and the plots.

Files whose bytes would not change are left alone (not even touched), so rebuilding a board from
unchanged results changes nothing on disk and nothing in `git status`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from transferbench.evaluation.results import ResultFile
from transferbench.leaderboard.page import render_page, plots_by_setting
from transferbench.leaderboard.plots import plot_filename
from transferbench.leaderboard.pooled import pooled_tables
from transferbench.leaderboard.render import tables_json, leaderboard_csv, render_markdown
from transferbench.leaderboard.tables import table_settings, grouped_tables
from transferbench.store import atomic_write_many


class Written(list):
    """Every file of the board (README.md, leaderboard.csv, leaderboard.json, index.html, then the
    plots), with `changed`: those written because their bytes changed, and `removed`: stale plots."""

    def __init__(self, paths: list[Path], changed: list[Path], removed: list[Path]):
        super().__init__(paths)
        self.changed = changed
        self.removed = removed


def _holds(path: Path, content: bytes) -> bool:
    """Whether the file at `path` already holds exactly `content` (an unreadable one does not)."""
    try:
        return path.is_file() and path.read_bytes() == content
    except OSError:
        return False


def write_leaderboard(
    results: Iterable[ResultFile],
    leaderboard_dir: Path,
    problems: Sequence[tuple[Path, str]] = (),
) -> Written:
    """Write README.md, leaderboard.csv, leaderboard.json, index.html and the plots (under
    `plots/`, see `transferbench.leaderboard.plots`) into `leaderboard_dir`, each atomically and only when its
    bytes change. `paths` lists them in that order.

    No timestamps: rebuilding from the same results gives byte-identical files. PNGs under
    `plots/` that belong to no current setting are removed (the folder is generated).
    """
    settings = table_settings(results)
    tables = grouped_tables(settings)
    pooled = pooled_tables(settings)
    plots = plots_by_setting(settings)
    directory = Path(leaderboard_dir)
    plot_links = {
        key: {kind: f"plots/{plot_filename(key.suite, key.plot_stem(), key.transfer_kind, kind)}" for kind in images}
        for key, images in plots.items()
    }
    outputs = {
        "README.md": render_markdown(tables, problems, plot_links, pooled),
        "leaderboard.csv": leaderboard_csv(tables, pooled),
        "leaderboard.json": json.dumps(
            tables_json(tables, problems, pooled), indent=2, allow_nan=False, ensure_ascii=False
        )
        + "\n",
        "index.html": render_page(tables, plots, problems, pooled),
    }
    files = {directory / name: text.encode("utf-8") for name, text in outputs.items()}
    for key, images in plots.items():
        for kind, png in images.items():
            files[directory / plot_links[key][kind]] = png
    changed = [path for path, content in files.items() if not _holds(path, content)]
    atomic_write_many({path: files[path] for path in changed})  # a full disk leaves the previous board whole
    removed = [stale for stale in sorted((directory / "plots").glob("*.png")) if stale not in files]
    for stale in removed:
        stale.unlink()
    return Written(list(files), changed, removed)
