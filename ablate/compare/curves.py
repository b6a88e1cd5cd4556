"""Curves from metrics rows: per-run series, EMA smoothing, mean and seed band on a shared grid, zoom windows."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ablate.compare.load import Run, as_number

# --x choice -> the metrics.jsonl column it reads
X_COLUMNS = {"step": "step", "tokens": "tokens", "time": "time_s"}
METRICS = {"val": "val/loss", "train": "train/loss"}
MAX_POINTS = 500  # per drawn line: enough for the eye, keeps report.html small for long runs


@dataclass
class Series:
    x: np.ndarray
    y: np.ndarray


@dataclass
class Band:
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int


def series(run: Run, metric: str, axis: str) -> Series:
    """The finite points of one metric against one x column, in x order."""
    column, name = X_COLUMNS[axis], METRICS[metric]
    points = []
    for row in run.rows:
        x, y = as_number(row.get(column)), as_number(row.get(name))
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            points.append((x, y))
    points.sort(key=lambda p: p[0])
    data = np.asarray(points, dtype=float).reshape(-1, 2)
    return Series(data[:, 0], data[:, 1])


def end_x(run: Run, axis: str) -> float | None:
    """Where a run stopped: the x of its last row (for a diverged run, the row holding the non-finite loss)."""
    column = X_COLUMNS[axis]
    for row in reversed(run.rows):
        x = as_number(row.get(column))
        if x is not None and math.isfinite(x):
            return x
    return None


def ema(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased so the first points are not pulled toward 0."""
    if weight <= 0 or len(y) == 0:
        return y
    out = np.empty_like(y)
    value, correction = 0.0, 1.0
    for i, v in enumerate(y):
        value = weight * value + (1 - weight) * v
        correction *= weight
        out[i] = value / (1 - correction)
    return out


def aggregate(runs: list[Series], band: str = "minmax") -> Band | None:
    """Mean over seeds with a min–max (or ±std) band, on the union of their x values within the range all
    seeds cover (beyond it the mean would silently be over fewer seeds)."""
    runs = [s for s in runs if len(s.x)]
    if not runs:
        return None
    start, stop = max(s.x[0] for s in runs), min(s.x[-1] for s in runs)
    grid = np.unique(np.concatenate([s.x[(s.x >= start) & (s.x <= stop)] for s in runs]))
    if len(grid) == 0:
        return None
    values = np.vstack([np.interp(grid, s.x, s.y) for s in runs])
    mean = values.mean(axis=0)
    if band == "std" and len(runs) > 1:
        std = values.std(axis=0, ddof=1)
        low, high = mean - std, mean + std
    else:
        low, high = values.min(axis=0), values.max(axis=0)
    return Band(grid, mean, low, high, len(runs))


def thin_indices(length: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Evenly spaced indices, first and last kept."""
    if length <= max_points:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, max_points).round().astype(int))


@dataclass(frozen=True)
class Zoom:
    """`x0:x1[,y0:y1]`; a missing bound is open; an x bound ending in % is a fraction of the x extent."""

    x0: float | None = None
    x1: float | None = None
    x0_pct: bool = False
    x1_pct: bool = False
    y0: float | None = None
    y1: float | None = None

    @property
    def numeric_x(self) -> bool:
        return (self.x0 is not None and not self.x0_pct) or (self.x1 is not None and not self.x1_pct)


DEFAULT_ZOOM = "70%:"  # the last 30% of training, where the differences live
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_X_WINDOW = re.compile(rf"\s*(?P<x0>{_NUMBER})?\s*(?P<x0_pct>%)?\s*:\s*(?P<x1>{_NUMBER})?\s*(?P<x1_pct>%)?\s*")
_Y_WINDOW = re.compile(rf"\s*(?P<y0>{_NUMBER})?\s*:\s*(?P<y1>{_NUMBER})?\s*")


def parse_zoom(text: str) -> Zoom:
    x_part, _, y_part = text.partition(",")
    x_match = _X_WINDOW.fullmatch(x_part)
    y_match = _Y_WINDOW.fullmatch(y_part) if y_part else None
    if not x_match or (y_part and not y_match):
        raise ValueError(f"--zoom {text!r}: expected x0:x1[,y0:y1], e.g. 800:1000 or 70%: or 800:,3.2:3.6")
    found = {**x_match.groupdict(), **(y_match.groupdict() if y_match else {})}

    def number(name: str) -> float | None:
        return float(found[name]) if found.get(name) is not None else None

    return Zoom(number("x0"), number("x1"), bool(found["x0_pct"]), bool(found["x1_pct"]), number("y0"),
                number("y1"))


def zoom_x_range(zoom: Zoom, extent: tuple[float, float], numeric_extent: tuple[float, float] | None,
                 scale: float = 1.0) -> tuple[float, float]:
    """The x window of a zoomed chart whose full x range is `extent`.

    Plain numbers are in the units of the --x axis (divided by `scale`, e.g. seconds shown as minutes); on the
    other axes (numeric_extent = the --x axis' extent) they become the same fraction of the range.
    """
    lo, hi = extent

    def bound(value, pct, default):
        if value is None:
            return default
        if pct:
            return lo + value / 100 * (hi - lo)
        if numeric_extent is None:
            return value / scale
        n_lo, n_hi = numeric_extent
        fraction = (value - n_lo) / (n_hi - n_lo) if n_hi > n_lo else 0.0
        return lo + fraction * (hi - lo)

    return bound(zoom.x0, zoom.x0_pct, lo), bound(zoom.x1, zoom.x1_pct, hi)


def fit_y(values: list[tuple[np.ndarray, np.ndarray]], x_range: tuple[float, float], log: bool
          ) -> tuple[float, float] | None:
    """A y range that fits every line inside the x window, with 5% margins (in log space for a log axis): its points
    there and where it crosses the window's edges (a short run's segment spanning the window has no point inside)."""
    inside = []
    for x, y in values:
        inside.append(y[(x >= x_range[0]) & (x <= x_range[1])])
        edges = [edge for edge in x_range if len(x) and x[0] <= edge <= x[-1]]
        inside.append(np.interp(edges, x, y) if edges else np.array([]))
    inside = np.concatenate(inside) if inside else np.array([])
    inside = inside[np.isfinite(inside)]
    if log:
        inside = inside[inside > 0]
    if len(inside) == 0:
        return None
    lo, hi = float(inside.min()), float(inside.max())
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.01 or 0.01
    lo, hi = lo - pad, hi + pad
    return (10**lo, 10**hi) if log else (lo, hi)
