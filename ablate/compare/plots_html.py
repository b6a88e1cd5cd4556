"""Interactive plotly figures for report.html, drawn from the same Chart models as the PNGs."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ablate.compare.charts import END_MARKERS, Chart, FinalPoint, Line

HEIGHT = 470


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _list(values: np.ndarray) -> list[float]:
    # plain lists, not plotly's base64 typed arrays: the page stays readable by any plotly.js and by tests
    return [float(v) for v in values]


def curves_figure(charts: list[Chart], title: str) -> go.Figure:
    fig = make_subplots(rows=1, cols=len(charts), subplot_titles=[c.title for c in charts],
                        horizontal_spacing=0.065)
    in_legend: set[str] = set()
    for col, chart in enumerate(charts, start=1):
        for line in chart.lines:
            for trace in _traces(line, line.label not in in_legend):
                fig.add_trace(trace, row=1, col=col)
            in_legend.add(line.label)
        log = chart.log_y
        fig.update_xaxes(title_text=chart.x_label, range=list(chart.x_range) if chart.x_range else None,
                         tickformat="~s" if chart.x_label == "training tokens" else None, row=1, col=col)
        y_range = [math.log10(v) for v in chart.y_range] if (chart.y_range and log) else chart.y_range
        fig.update_yaxes(title_text=chart.y_label, type="log" if log else "linear",
                         range=list(y_range) if y_range else None, row=1, col=col)
    fig.update_layout(title={"text": title, "x": 0.01}, template="plotly_white", height=HEIGHT,
                      hovermode="closest", margin={"l": 60, "r": 20, "t": 80, "b": 60},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0})
    return fig


def _traces(line: Line, show_legend: bool) -> list[go.Scatter]:
    name = f"{line.label} (baseline)" if line.baseline else line.label
    common = {"legendgroup": line.label, "name": name, "legendrank": 1 if line.baseline else 1000}
    if line.run:  # a run that did not complete: thin dashed line, marker where it stopped
        traces = [go.Scatter(x=_list(line.x), y=_list(line.y), mode="lines", showlegend=show_legend,
                             line={"color": line.colour, "width": 1.2, "dash": "dash"},
                             hovertemplate=f"{line.name}<br>x %{{x}}<br>loss %{{y:.4f}}<extra></extra>", **common)]
        if line.end_x is not None and line.end_y is not None:
            traces.append(go.Scatter(
                x=[line.end_x], y=[line.end_y], mode="markers", showlegend=False,
                marker={"symbol": END_MARKERS.get(line.end, "circle"), "size": 12, "color": line.colour,
                        "line": {"width": 1, "color": "black"}},
                hovertemplate=f"{line.run}: {line.end} at x %{{x}}<extra></extra>", **common))
        return traces
    traces = []
    if line.low is not None:
        traces.append(go.Scatter(
            x=_list(np.concatenate([line.x, line.x[::-1]])), y=_list(np.concatenate([line.high, line.low[::-1]])),
            fill="toself", fillcolor=_rgba(line.colour, 0.18), line={"width": 0}, mode="lines",
            hoverinfo="skip", showlegend=False, **common))
    traces.append(go.Scatter(
        x=_list(line.x), y=_list(line.y), mode="lines", showlegend=show_legend,
        line={"color": line.colour, "width": 3.2 if line.baseline else 2},
        hovertemplate=f"{line.name}<br>x %{{x}}<br>loss %{{y:.4f}}<extra></extra>", **common))
    return traces


def final_figure(points: list[FinalPoint], title: str) -> go.Figure:
    fig = go.Figure()
    for point in points:
        label = f"{point.label} (baseline)" if point.baseline else point.label
        fig.add_trace(go.Scatter(
            x=_list(np.asarray(point.values)), y=[label] * len(point.values), mode="markers", showlegend=False,
            marker={"color": point.colour, "size": 8, "opacity": 0.7},
            hovertemplate=f"{label}: seed %{{x:.4f}}<extra></extra>"))
        fig.add_trace(go.Scatter(
            x=[point.mean], y=[label], mode="markers+text" if point.note else "markers", showlegend=False,
            text=[point.note], textposition="top center", textfont={"size": 11, "color": "#333333"},
            marker={"color": point.colour, "size": 13, "symbol": "diamond", "line": {"width": 1, "color": "black"}},
            error_x={"type": "data", "array": [0.0 if math.isnan(point.std) else point.std], "visible": True,
                     "color": point.colour, "thickness": 2, "width": 6},
            hovertemplate=f"{label}: mean %{{x:.4f}}<extra></extra>"))
    fig.update_layout(title={"text": title, "x": 0.01}, template="plotly_white",
                      height=max(260, 120 + 34 * len(points)), margin={"l": 60, "r": 20, "t": 60, "b": 50},
                      xaxis_title="final validation loss (nats/token)")
    # best on top (the table's order), with room above the top row for its note
    fig.update_yaxes(type="category", range=[len(points) - 0.5, -0.8])
    return fig
