"""Stage 6: the leaderboard's plots and its self-contained, sortable HTML page."""

import base64
import html
import re
import shutil
import struct
import subprocess
import time
import webbrowser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from transferbench.evaluation.results import make_result
from transferbench.leaderboard import plots
from transferbench.leaderboard import build_tables, open_in_browser, render_html, write_leaderboard
from transferbench.leaderboard.plots import PLOT_KINDS, plot_filename, plot_size_px, task_order
from transferbench.leaderboard.render import _display_cells

# Built-in task names from three families, plus one that no registry knows.
TASKS = ["vader_movies", "snli", "rt_sentiment", "bbc_topic", "rt_subjectivity", "my_own_task"]
BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def result(name, noise, *, seed=0, baseline=False, params=None, kind="zero_shot", drop=False, sign=1.0):
    transfer = pd.DataFrame(
        np.random.default_rng(7).uniform(0.3, 1.0, (6, 6)), index=TASKS, columns=TASKS
    )
    scores = sign * transfer + np.random.default_rng(seed).normal(scale=noise, size=transfer.shape)
    if drop:  # target `snli` keeps 2 sources: not covered
        scores.loc[TASKS[2:], "snli"] = np.nan
    return make_result(
        scores, transfer, indicator=name, params=params, baseline=baseline, suite="sentiment",
        backbone=BACKBONE, transfer_kind=kind, seeds=[0],
        manifest={"created_at": "2025-01-01T00:00:00+00:00"}, n_bootstrap=200,
    )


@pytest.fixture(scope="module")
def results():
    return [
        result("skill_overlap", 0.05, params={"p": 0.05}),
        result("prompt_cosine", 0.3, seed=1),
        result("reversed", 0.01, seed=2, baseline=True, sign=-1.0),  # significantly worst
        result("skill_overlap", 0.1, seed=3, kind="init_gain", drop=True),
    ]


PROBLEMS = [(Path("submissions/broken.json"), "not readable JSON (Expecting value)")]


@pytest.fixture(scope="module")
def board(results, tmp_path_factory):
    folder = tmp_path_factory.mktemp("board")
    return folder, write_leaderboard(results, folder, PROBLEMS)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plots_are_fixed_size_pngs_named_by_setting(board):
    folder, paths = board
    written = sorted(p.name for p in paths if p.parent == folder / "plots")
    expected = sorted(
        plot_filename("sentiment", f"{BACKBONE}-ref-none", kind, plot) for kind in ("zero_shot", "init_gain")
        for plot in PLOT_KINDS
    )
    assert written == expected
    assert sorted(p.name for p in (folder / "plots").iterdir()) == expected
    for name in written:
        data = (folder / "plots" / name).read_bytes()
        kind = name.removesuffix(".png").rsplit("__", 1)[1]
        assert png_size(data) == plot_size_px(kind)
        assert len(data) > 10_000  # a drawn figure, not an empty canvas
        assert b"matplotlib" not in data  # no version stamp: rebuilds are byte-identical


def test_rebuild_is_byte_identical_and_removes_stale_plots(results, board, tmp_path):
    folder, paths = board
    again = write_leaderboard(list(reversed(results)), tmp_path, PROBLEMS)
    assert [p.name for p in again] == [p.name for p in paths]
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]
    write_leaderboard(results[:3], tmp_path)  # the init_gain setting is gone
    assert not list((tmp_path / "plots").glob("*init_gain*"))
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3


def test_readme_links_the_plots(board):
    folder, _ = board
    readme = (folder / "README.md").read_text()
    links = re.findall(r"\]\((plots/[^)]+\.png)\)", readme)
    assert len(links) == 6
    assert all((folder / link).is_file() for link in links)


def test_html_has_every_row_marks_skipped_files_and_embedded_plots(results, board):
    folder, _ = board
    page = (folder / "index.html").read_text()
    assert page == render_html(results, PROBLEMS)
    rows = re.findall(r'<tr[^>]*data-indicator="([^"]+)"', page)
    assert rows == ["skill_overlap", "skill_overlap(p=0.05)", "prompt_cosine", "reversed"]  # init_gain first
    assert 'reversed <span class="mark">(baseline)</span>' in page
    # Every cell of README.md's tables (CI, significance marks, coverage) is in its row.
    html_rows = re.findall(r"<tr[^>]*data-indicator=.*?</tr>", page)
    expected_rows = [row for table in build_tables(results).values() for _, row in table.iterrows()]
    assert len(html_rows) == len(expected_rows) == 4
    for html_row, row in zip(html_rows, expected_rows):
        cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", html_row)]
        cells[1] = re.sub(r"<[^>]+>", "", cells[1])
        assert cells == _display_cells(row)
    assert re.search(r'<td class="sig-yes"[^>]*>0\.\d{3} \*</td>', page)  # reversed is below prompt_cosine
    assert "5/6" in page  # the init_gain indicator does not cover snli
    assert "submissions/broken.json" in page and "Skipped result files" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 6
    on_disk = {p.read_bytes() for p in (folder / "plots").glob("*.png")}
    assert {base64.b64decode(image) for image in images} == on_disk
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "http://" not in page and "https://" not in page


def test_task_order_groups_families_and_puts_unknown_tasks_last():
    order = task_order(["vader_movies", "my_own_task", "snli", "rt_subjectivity", "/gone/task.yaml", "bbc_topic"])
    families = plots.task_families(order)
    assert order == ["snli", "vader_movies", "rt_subjectivity", "bbc_topic", "/gone/task.yaml", "my_own_task"]
    assert [families[t] for t in order] == ["nli", "sentiment", "subjectivity", "topic", "unknown", "unknown"]


def test_open_in_browser_says_when_there_is_no_browser(monkeypatch, tmp_path):
    def no_browser(url):
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "open", no_browser)
    assert open_in_browser(tmp_path / "index.html") is False
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    assert open_in_browser(tmp_path / "index.html") is True
    assert opened == [(tmp_path / "index.html").resolve().as_uri()]


# ---------------------------------------------------------------------------------------------
# The page in a real browser (headless Chromium; CI installs it, see .ci/run).

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path: Path, *args: str) -> str:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000", *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def table_rows(dom: str) -> list[list[str]]:
    """The indicator order of each table in a DOM dump."""
    return [re.findall(r'data-indicator="([^"]+)"', table) for table in dom.split('<table class="board">')[1:]]


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium); CI installs it")
def test_tables_sort_in_a_real_browser(board, tmp_path):
    folder, _ = board
    url = (folder / "index.html").resolve().as_uri()
    started = time.perf_counter()
    ranked = table_rows(chromium(tmp_path, "--dump-dom", url))
    assert ranked == [["skill_overlap"], ["skill_overlap(p=0.05)", "prompt_cosine", "reversed"]]

    by_name = table_rows(chromium(tmp_path, "--dump-dom", url + "#sort=indicator"))
    assert by_name[1] == ["prompt_cosine", "reversed", "skill_overlap(p=0.05)"]
    worst_first = table_rows(chromium(tmp_path, "--dump-dom", url + "#sort=mean_spearman:asc"))
    assert worst_first[1] == ["reversed", "prompt_cosine", "skill_overlap(p=0.05)"]
    # The top row has no p value (nothing above it): missing values sort last.
    assert table_rows(chromium(tmp_path, "--dump-dom", url + "#sort=sig:desc"))[1][-1] == "skill_overlap(p=0.05)"

    # Real clicks: a copy of the page that clicks the `indicator` header twice (name, descending).
    page = (folder / "index.html").read_text()
    clicks = "<script>var b = document.querySelectorAll('th[data-key=indicator] button'); b[1].click(); b[1].click();</script>"
    clicked = tmp_path / "clicked.html"
    clicked.write_text(page.replace("</body>", clicks + "</body>"))
    dom = chromium(tmp_path, "--dump-dom", clicked.as_uri())
    assert table_rows(dom)[1] == ["skill_overlap(p=0.05)", "reversed", "prompt_cosine"]
    assert table_rows(dom)[0] == ["skill_overlap"]  # the other table is untouched
    assert dom.count('aria-sort="descending"') == 2  # the CSS rule and the clicked header

    shot = tmp_path / "page.png"
    chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}", url)
    data = shot.read_bytes()
    assert png_size(data) == (1400, 1000)
    assert len(data) > 50_000  # text, tables and a plot, not a blank page
    print(f"browser checks took {time.perf_counter() - started:.1f} s")


def test_page_assets_are_package_data():
    """The page's frame, CSS and JS are files the installed package ships (pyproject package-data)."""
    import fnmatch
    import tomllib

    from transferbench.leaderboard import page

    root = Path(__file__).resolve().parent.parent
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "transferbench.leaderboard"]
    assets = sorted(p.relative_to(root / "transferbench" / "leaderboard").as_posix()
                    for p in (root / "transferbench" / "leaderboard" / "assets").iterdir())
    assert assets == ["assets/board.css", "assets/board.js", "assets/page.html"]
    assert all(any(fnmatch.fnmatch(asset, pattern) for pattern in patterns) for asset in assets)
    html = page.render_html([])
    assert "table.board" in html and "sortFromHash" in html and "${" not in html  # every slot filled
