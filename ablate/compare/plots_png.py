"""PNG figures (matplotlib, headless): the same charts as the HTML page, sized for a paper or README.

Figures are built on matplotlib.figure.Figure (no pyplot global state) and saved without tight bbox so each PNG
has exactly the documented pixel size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, ScalarFormatter

from ablate.compare.charts import Chart, FinalPoint, Line

DPI = 120
CURVES_SIZE_IN = (15.0, 5.5)  # 1800 × 660 px: three panels side by side, legend below
MPL_MARKERS = {"diverged": "X", "failed": "s", "running": ">"}


def final_size_in(variants: int) -> tuple[float, float]:
    """The final-loss figure grows with the number of variants so labels never overlap."""
    return 9.0, max(3.0, 1.4 + 0.45 * variants)


def curves_png(charts: list[Chart], title: str, path: Path) -> Path:
    fig = Figure(figsize=CURVES_SIZE_IN, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(charts))
    for ax, chart in zip(np.atleast_1d(axes), charts):
        for line in chart.lines:
            _draw(ax, line)
        _decorate(ax, chart)
    handles = _legend_handles([line for chart in charts for line in chart.lines])
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), frameon=False,
                   fontsize=10)
    fig.suptitle(title, fontsize=13)
    fig.savefig(path, dpi=DPI)
    return path


def _draw(ax, line: Line) -> None:
    if line.run:  # one run that did not complete: thin, dashed, marked where it stopped
        ax.plot(line.x, line.y, color=line.colour, lw=1.0, ls="--", alpha=0.9)
        if line.end_x is not None and line.end_y is not None:
            ax.plot([line.end_x], [line.end_y], MPL_MARKERS.get(line.end, "o"), color=line.colour, ms=9,
                    mec="black", mew=0.8, zorder=5)
        return
    ax.plot(line.x, line.y, color=line.colour, lw=2.6 if line.baseline else 1.7, zorder=4 if line.baseline else 3)
    if line.low is not None:
        ax.fill_between(line.x, line.low, line.high, color=line.colour, alpha=0.18, lw=0)


def _decorate(ax, chart: Chart) -> None:
    ax.set_title(chart.title, fontsize=11)
    ax.set_xlabel(chart.x_label)
    ax.set_ylabel(chart.y_label)
    ax.grid(True, alpha=0.3)
    if chart.log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
    if chart.x_label == "training tokens":
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    if chart.x_range:
        ax.set_xlim(*chart.x_range)
    if chart.y_range:
        ax.set_ylim(*chart.y_range)


def _legend_handles(lines: list[Line]) -> list:
    handles, seen = [], set()
    has_mean = {line.label for line in lines if not line.run}
    for line in sorted(lines, key=lambda line: not line.baseline):  # baseline first in the legend
        if line.label in seen:
            continue
        seen.add(line.label)
        name = f"{line.label} (baseline)" if line.baseline else line.label
        if line.label in has_mean:
            handles.append(Line2D([], [], color=line.colour, lw=2.6 if line.baseline else 1.7, label=name))
        else:  # no completed seed: only its dashed single-run lines exist
            handles.append(Line2D([], [], color=line.colour, lw=1.0, ls="--", label=f"{name}, no completed run"))
    if any(line.low is not None for line in lines):
        handles.append(Patch(color="grey", alpha=0.3, label="seed band"))
    for status in sorted({line.end for line in lines if line.run and line.end}):
        handles.append(Line2D([], [], ls="--", color="grey", marker=MPL_MARKERS.get(status, "o"), mec="black",
                              label=f"{status} run (own line)"))
    return handles


def final_png(points: list[FinalPoint], title: str, path: Path) -> Path:
    """Per variant: each seed's final val loss as a dot, the mean ± std as a bar, the % vs baseline and verdict
    above it; the baseline's mean as a dashed line."""
    fig = Figure(figsize=final_size_in(len(points)), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    rows = np.arange(len(points))[::-1]  # the table's order, best on top
    for row, point in zip(rows, points):
        ax.scatter(point.values, np.full(len(point.values), row), color=point.colour, s=28, alpha=0.75, zorder=3)
        xerr = None if np.isnan(point.std) else point.std
        ax.errorbar(point.mean, row, xerr=xerr, fmt="D", color=point.colour, ms=8, capsize=5, mec="black",
                    mew=0.6, zorder=4)
        if point.baseline:
            ax.axvline(point.mean, color=point.colour, ls="--", lw=1, alpha=0.7)
        if point.note:
            ax.annotate(point.note, (point.mean, row), xytext=(0, 9), textcoords="offset points", ha="center",
                        va="bottom", fontsize=9, color="#333333")
    ax.set_yticks(rows, [f"{p.label} (baseline)" if p.baseline else p.label for p in points])
    for tick, point in zip(ax.get_yticklabels(), points):
        tick.set_fontweight("bold" if point.baseline else "normal")
    ax.set_xlabel("final validation loss (nats/token)")
    ax.set_ylim(-0.6, len(points) - 0.2)  # room above the top row for its note
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize=12)
    fig.savefig(path, dpi=DPI)
    return path
