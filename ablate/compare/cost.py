"""Cost vs quality: each variant's final val loss (mean ± std over seeds) against the decoding state one sequence
needs (summary.json `inference/kv_cache_bytes`), one point per variant — the trade MQA, GQA, MLA, local and linear
attention are about. Drawn for a section when its runs recorded the KV-cache size."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ablate.compare.charts import variant_colours
from ablate.compare.group import Section
from ablate.compare.rows import VariantRow

DPI = 110
X_LABEL = "KV cache per sequence at block_size (bytes, log scale)"
Y_LABEL = "final validation loss (nats/token)"


@dataclass
class CostPoint:
    label: str
    colour: str
    baseline: bool
    kv_bytes: float
    mean: float
    std: float  # nan with one seed


def cost_points(section: Section, rows: list[VariantRow]) -> list[CostPoint]:
    colours = variant_colours(section)
    return [CostPoint(row.label, colours[row.label], row.is_baseline, row.kv_cache_bytes, row.final_spread.mean,
                      row.final_spread.std) for row in rows
            if row.final_spread is not None and row.kv_cache_bytes is not None]


def _std(point: CostPoint) -> float:
    return 0.0 if math.isnan(point.std) else point.std


def cost_png(points: list[CostPoint], title: str, path: Path) -> Path:
    fig = Figure(figsize=(7.5, 4.5), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for p in points:
        ax.errorbar(p.kv_bytes, p.mean, yerr=_std(p), fmt="D" if p.baseline else "o", color=p.colour, ms=8,
                    capsize=5, mec="black", mew=0.6, zorder=3)
        ax.annotate(f"{p.label} (baseline)" if p.baseline else p.label, (p.kv_bytes, p.mean), xytext=(7, 5),
                    textcoords="offset points", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=12)
    fig.savefig(path, dpi=DPI)
    return path


def cost_figure(points: list[CostPoint], title: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for p in points:
        label = f"{p.label} (baseline)" if p.baseline else p.label
        fig.add_trace(go.Scatter(
            x=[p.kv_bytes], y=[p.mean], mode="markers+text", text=[label], textposition="top right", name=label,
            marker={"color": p.colour, "size": 12, "symbol": "diamond" if p.baseline else "circle",
                    "line": {"width": 1, "color": "black"}},
            error_y={"type": "data", "array": [_std(p)], "visible": True, "color": p.colour},
            hovertemplate=f"{label}: %{{x:,.0f}} B, loss %{{y:.4f}}<extra></extra>"))
    xs = np.log10([p.kv_bytes for p in points if p.kv_bytes > 0] or [1.0])
    fig.update_layout(title={"text": title, "x": 0.01}, template="plotly_white", height=420, showlegend=False,
                      xaxis={"type": "log", "title": X_LABEL, "range": [xs.min() - 0.3, xs.max() + 0.5]},
                      yaxis_title=Y_LABEL)
    return fig
