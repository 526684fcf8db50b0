"""Stage 6, the leaderboard's figures: what the numbers in one leaderboard table are made of.

For one setting (suite, backbone, transfer kind) and its validated result files: the measured
transfer as a heatmap, each indicator's scores against the measured transfer, and each
indicator's per-target Spearman rho. Figures are PNG bytes of a fixed size, rendered with
matplotlib's default style (a user's matplotlibrc is ignored) and without a version stamp, so the
same results give byte-identical files on the same matplotlib and fonts.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from transferbench.errors import TransferbenchError
from transferbench.evaluation.results import ResultFile, slug_of, dataframes
from transferbench.reference.protocol import transfer_label

DPI = 100
SIZES = {"transfer": (9.0, 8.0), "scatter": (12.0, 8.0), "spearman": (12.0, 6.0)}
"""Figure kind -> (width, height) in inches; the PNG is DPI times that in pixels."""

PLOT_KINDS = ("transfer", "scatter", "spearman")
CAPTIONS = {
    "transfer": "Measured transfer, source task (row) to target task (column); tasks grouped by family.",
    "scatter": "Indicator score against measured transfer, both z-scored within each target "
    "(covered targets only); this is the relation the per-target Spearman ρ ranks.",
    "spearman": "Per-target Spearman ρ of each indicator (bars, one colour per target); black: "
    "mean ρ with its bootstrap 95% CI; × marks a target the indicator does not cover.",
}
_UNKNOWN_FAMILY = "unknown"


def plot_size_px(kind: str) -> tuple[int, int]:
    """(width, height) in pixels of the PNG of `kind` ("transfer", "scatter" or "spearman")."""
    width, height = SIZES[kind]
    return round(width * DPI), round(height * DPI)


def plot_filename(suite: str, backbone: str, transfer_kind: str, kind: str) -> str:
    """`<suite>__<backbone>__<transfer_kind>__<kind>.png`, filesystem-safe, like result files."""
    return "__".join([slug_of(suite), slug_of(backbone), transfer_kind, kind]) + ".png"


# ---------------------------------------------------------------------------------------------
# Data


def task_families(tasks: Sequence[str]) -> dict[str, str]:
    """Task -> family from the task registry; a task that cannot be loaded (e.g. a user's task
    file that no longer exists) gets family `unknown`."""
    from transferbench.tasks import load_task

    families = {}
    for task in tasks:
        try:
            families[task] = load_task(task).family
        except (TransferbenchError, OSError, ValueError):
            families[task] = _UNKNOWN_FAMILY
    return families


def task_order(tasks: Sequence[str], families: dict[str, str] | None = None) -> list[str]:
    """Tasks grouped by family (families and tasks in name order); unknown families last."""
    families = task_families(tasks) if families is None else families
    return sorted(tasks, key=lambda t: (families[t] == _UNKNOWN_FAMILY, families[t], t))


def measured_transfer(results: Sequence[ResultFile]) -> tuple[pd.DataFrame, bool]:
    """The measured transfer of one setting over the union of the results' tasks, and whether
    the result files disagree on it (then each cell is the mean over the files that have it)."""
    frames = [dataframes(result)[1] for result in results]
    stacked = pd.concat(frames)
    grouped = stacked.groupby(level=0, sort=False)
    mean, spread = grouped.mean(), grouped.max() - grouped.min()
    disagree = bool((spread.fillna(0.0).abs() > 1e-9).to_numpy().any())
    return mean, disagree


def zscored_pairs(result: ResultFile) -> tuple[np.ndarray, np.ndarray]:
    """(score z, transfer z) over all covered targets: per target t, the sources s != t with
    both values, each variable standardised (mean 0, population std 1) within the target."""
    scores, transfer = dataframes(result)
    xs, ys = [], []
    for target in result.tasks:
        evaluation = result.metrics.per_target.get(target)
        if evaluation is None or not evaluation.covered:
            continue
        x = scores[target].drop(index=target).to_numpy(dtype=float)
        y = transfer[target].drop(index=target).to_numpy(dtype=float)
        valid = ~(np.isnan(x) | np.isnan(y))
        x, y = x[valid], y[valid]
        if len(x) < 2 or x.std() == 0 or y.std() == 0:
            continue
        xs.append((x - x.mean()) / x.std())
        ys.append((y - y.mean()) / y.std())
    if not xs:
        return np.empty(0), np.empty(0)
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------------------------------------
# Figures


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    # No "Software" text chunk: the bytes do not change with the matplotlib version string.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _indicator_title(result: ResultFile) -> str:
    return result.indicator.label() + (" (baseline)" if result.indicator.baseline else "")


def _family_separators(ax, order: list[str], families: dict[str, str]) -> None:
    """White lines between task families and the family names above the columns."""
    start = 0
    for i in range(1, len(order) + 1):
        if i == len(order) or families[order[i]] != families[order[start]]:
            if i < len(order):
                ax.axhline(i - 0.5, color="white", linewidth=2.5)
                ax.axvline(i - 0.5, color="white", linewidth=2.5)
            ax.text(
                (start + i - 1) / 2, -0.65, families[order[start]], ha="center", va="bottom",
                fontsize=8 if i - start == 1 else 9, style="italic", color="#444444",
            )
            start = i


def transfer_heatmap(results: Sequence[ResultFile]) -> bytes:
    """Heatmap of the measured transfer: sources as rows, targets as columns, both grouped by
    task family; values written in the cells; the diagonal and missing pairs in grey."""
    first = results[0]
    transfer, disagree = measured_transfer(results)
    families = task_families(list(transfer.index))
    order = task_order(list(transfer.index), families)
    values = transfer.reindex(index=order, columns=order).to_numpy(dtype=float, copy=True)
    np.fill_diagonal(values, np.nan)
    n = len(order)

    with matplotlib.style.context("default"):
        figure = Figure(figsize=SIZES["transfer"])
        ax = figure.add_subplot()
        cmap = matplotlib.colormaps["viridis"]
        norm = None
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() < 0 < finite.max():
            # Gains of both signs: a diverging map centred on "no effect".
            cmap = matplotlib.colormaps["RdBu"]
            limit = float(np.abs(finite).max())
            norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
        cmap = cmap.with_extremes(bad="#d9d9d9")
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
        fontsize = max(5.0, min(10.0, 90.0 / max(n, 1)))
        for i in range(n):
            for j in range(n):
                if math.isnan(values[i, j]):
                    continue
                red, green, blue, _ = image.cmap(image.norm(values[i, j]))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                text = f"{values[i, j]:.2f}".replace("-0.00", "0.00")
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                        color="white" if dark else "black")
        ax.set_xticks(range(n), order, rotation=40, ha="right", fontsize=9)
        ax.set_yticks(range(n), order, fontsize=9)
        ax.set_xlabel("target task")
        ax.set_ylabel("source task (prompt trained on)")
        ax.set_ylim(n - 0.5, -1.2)  # room above the first row for the family names
        ax.spines[:].set_visible(False)
        _family_separators(ax, order, families)
        colorbar = figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        colorbar.set_label(transfer_label(first.transfer_kind), fontsize=9)  # the kind's registered label
        title = f"Measured transfer ({first.transfer_kind}) · {first.suite} · {first.backbone}"
        if disagree:
            title += f"\nresult files disagree: mean of {len(results)} files shown"
        ax.set_title(title, fontsize=11)
        figure.subplots_adjust(left=0.19, right=0.9, bottom=0.19, top=0.92)
        return _png(figure)


def score_scatter(results: Sequence[ResultFile]) -> bytes:
    """One panel per indicator (in the order given): indicator score against measured transfer,
    both z-scored within each target, with the indicator's mean per-target Spearman rho."""
    n = len(results)
    columns = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    with matplotlib.style.context("default"):
        figure = Figure(figsize=SIZES["scatter"])
        axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
        for index, ax in enumerate(axes.flat):
            if index >= n:
                ax.set_visible(False)
                continue
            result = results[index]
            x, y = zscored_pairs(result)
            ax.axhline(0, color="#bbbbbb", linewidth=0.8, zorder=0)
            ax.axvline(0, color="#bbbbbb", linewidth=0.8, zorder=0)
            ax.scatter(x, y, s=14, alpha=0.6, color="#7f7f7f" if result.indicator.baseline else "#1f77b4",
                       edgecolors="none")
            m = result.metrics
            summary = "mean ρ –" if math.isnan(m.mean_spearman) else (
                f"mean ρ {m.mean_spearman:.2f} [{m.ci_low:.2f}, {m.ci_high:.2f}]"
            )
            ax.text(0.03, 0.97, f"{summary}\n{m.n_targets_covered}/{m.n_targets} targets, {len(x)} pairs",
                    transform=ax.transAxes, va="top", fontsize=8,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
            ax.set_title(_indicator_title(result), fontsize=10)
            if index % columns == 0:
                ax.set_ylabel("measured transfer\n(z-score within target)", fontsize=9)
            if index >= n - columns:
                ax.set_xlabel("indicator score (z-score within target)", fontsize=9)
                ax.xaxis.set_tick_params(labelbottom=True)
        first = results[0]
        figure.suptitle(f"Indicator scores vs measured transfer ({first.transfer_kind}) · "
                        f"{first.suite} · {first.backbone}", fontsize=11)
        figure.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.9, hspace=0.35, wspace=0.12)
        return _png(figure)


def spearman_bars(results: Sequence[ResultFile]) -> bytes:
    """Per-target Spearman rho, grouped per indicator (in the order given): one bar per target,
    coloured by target (grouped by family), and the indicator's mean with its bootstrap CI."""
    tasks = sorted({task for result in results for task in result.tasks})
    families = task_families(tasks)
    order = task_order(tasks, families)
    palette = matplotlib.colormaps["tab20"] if len(order) > 10 else matplotlib.colormaps["tab10"]
    colours = {task: palette(i % palette.N) for i, task in enumerate(order)}
    width = 0.8 / max(len(order), 1)

    with matplotlib.style.context("default"):
        figure = Figure(figsize=SIZES["spearman"])
        ax = figure.add_subplot()
        ax.axhline(0, color="black", linewidth=0.8)
        for group, result in enumerate(results):
            per_target = result.metrics.per_target_spearman()
            for position, task in enumerate(order):
                x = group - 0.4 + width * (position + 0.5)
                if task not in per_target:  # the indicator's file does not have this task
                    continue
                rho = per_target[task]
                if math.isnan(rho):
                    ax.plot(x, 0, marker="x", color="#555555", markersize=5)
                else:
                    ax.bar(x, rho, width=width * 0.9, color=colours[task],
                           label=task if group == 0 else None)
            m = result.metrics
            if not math.isnan(m.mean_spearman):
                ax.hlines(m.mean_spearman, group - 0.42, group + 0.42, color="black", linewidth=2)
                ax.errorbar(group, m.mean_spearman, yerr=[[m.mean_spearman - m.ci_low], [m.ci_high - m.mean_spearman]],
                            color="black", capsize=5, linewidth=1.5)
        # Legend entries for every target, even ones the first indicator does not cover.
        handles = [Patch(color=colours[t], label=f"{t} ({families[t]})") for t in order]
        ax.legend(handles=handles, title="target task", fontsize=8, title_fontsize=9,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.set_xticks(range(len(results)), [_indicator_title(r) for r in results], rotation=20, ha="right",
                      fontsize=9)
        ax.set_xlim(-0.5, len(results) - 0.5)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("Spearman ρ over sources, per target")
        ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
        ax.set_axisbelow(True)
        first = results[0]
        ax.set_title(f"Per-target Spearman ρ ({first.transfer_kind}) · {first.suite} · {first.backbone}",
                     fontsize=11)
        figure.subplots_adjust(left=0.07, right=0.78, bottom=0.14, top=0.93)
        return _png(figure)


def setting_plots(results: Sequence[ResultFile]) -> dict[str, bytes]:
    """kind -> PNG bytes for one setting's results, given in leaderboard rank order."""
    if not results:
        raise ValueError("setting_plots needs at least one result")
    keys = {(r.suite, r.backbone, r.transfer_kind) for r in results}
    if len(keys) != 1:
        raise ValueError(f"results of one setting expected, got {sorted(keys)}")
    return {
        "transfer": transfer_heatmap(results),
        "scatter": score_scatter(results),
        "spearman": spearman_bars(results),
    }
