"""What to draw, independent of how: lines with seed bands, end markers, axis labels, zoom windows.
The PNG (matplotlib) and HTML (plotly) renderers both draw these, so colours and windows agree everywhere."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ablate.compare import curves
from ablate.compare.group import Section
from ablate.compare.load import Run
from ablate.compare.rows import VariantRow, counted

BASELINE_COLOUR = "#111111"
# Colour-blind-friendly qualitative colours (Okabe–Ito, then Tableau); black is reserved for the baseline.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#8c564b",
           "#17becf", "#bcbd22", "#9467bd", "#e377c2", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a"]
END_MARKERS = {"diverged": "x", "failed": "square", "running": "triangle-right"}  # plotly symbol names
X_LABELS = {"step": "optimizer step", "tokens": "training tokens"}
Y_LABELS = {"val": "validation loss (nats/token)", "train": "training loss (nats/token)"}
TIME_UNITS = ((3600.0, "h"), (60.0, "min"), (1.0, "s"))


@dataclass
class Options:
    axes: tuple[str, ...] = ("step", "tokens", "time")
    smooth: float = 0.0  # EMA weight on training-loss curves; 0 = raw
    zoom: curves.Zoom = field(default_factory=lambda: curves.parse_zoom(curves.DEFAULT_ZOOM))
    zoom_axis: str = "step"  # the axis plain --zoom numbers are in
    log_y: bool = False
    band: str = "minmax"  # seed band: minmax | std


@dataclass
class Line:
    label: str  # the variant
    colour: str
    baseline: bool
    x: np.ndarray
    y: np.ndarray
    low: np.ndarray | None = None  # seed band (mean lines of >1 seed)
    high: np.ndarray | None = None
    n: int = 1  # seeds in the mean
    run: str | None = None  # set for a single non-completed run, drawn thin and dashed
    end: str | None = None  # diverged | failed | running: a marker where the run stopped
    end_x: float | None = None
    end_y: float | None = None

    @property
    def name(self) -> str:
        if self.run:
            return f"{self.label} · {self.run} ({self.end})"
        return f"{self.label} (mean of {self.n} seeds)" if self.n > 1 else self.label


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    lines: list[Line]
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    log_y: bool = False


@dataclass
class FinalPoint:
    label: str
    colour: str
    baseline: bool
    values: list[float]  # per completed seed
    mean: float
    std: float
    note: str = ""  # e.g. "-4.16% · better": the comparison with the baseline, written next to the mean


def variant_colours(section: Section) -> dict[str, str]:
    """Baseline black; every other variant the palette colour its name hashes to, so a variant keeps its colour in
    every chart and in every report of runs that include it, whatever else is in the section."""
    return name_colours(list(section.variants), section.baseline)


def name_colours(labels: list[str], baseline: str | None) -> dict[str, str]:
    """The colour of each label (`variant_colours`): two names that hash to one colour: the later in name order
    takes the next free one."""
    colours, taken = {}, set()
    for label in sorted(label for label in labels if label != baseline):
        index = int(hashlib.sha256(label.encode()).hexdigest(), 16) % len(PALETTE)
        while PALETTE[index] in taken and len(taken) < len(PALETTE):
            index = (index + 1) % len(PALETTE)
        colours[label] = PALETTE[index]
        taken.add(PALETTE[index])
    if baseline in labels:
        colours[baseline] = BASELINE_COLOUR
    return colours


def time_unit(runs: list[Run]) -> tuple[float, str]:
    longest = max((curves.end_x(r, "time") or 0.0 for r in runs), default=0.0)
    return next((scale, unit) for scale, unit in TIME_UNITS if longest >= 2 * scale or scale == 1.0)


def x_label(axis: str, unit: str) -> str:
    return X_LABELS.get(axis, f"training time ({unit}, evaluation excluded)")


def lines_for(section: Section, metric: str, axis: str, options: Options, colours: dict[str, str],
              scale: float = 1.0) -> list[Line]:
    """The mean (+ band) of each variant's completed seeds, then each other run on its own, up to where it stopped."""
    lines = []
    # the baseline last, so it is drawn on top of any variant with the same curve
    for label, runs in sorted(section.variants.items(), key=lambda item: item[0] == section.baseline):
        style = {"label": label, "colour": colours[label], "baseline": label == section.baseline}
        done = [_scaled(_smoothed(curves.series(r, metric, axis), metric, options), scale)
                for r in runs if counted(r)]
        band = curves.aggregate(done, options.band)
        if band is not None:
            keep = curves.thin_indices(len(band.x))
            spread = band.n > 1
            lines.append(Line(**style, x=band.x[keep], y=band.mean[keep], n=band.n,
                              low=band.low[keep] if spread else None, high=band.high[keep] if spread else None))
        for run in runs:
            if counted(run):
                continue
            s = _scaled(_smoothed(curves.series(run, metric, axis), metric, options), scale)
            keep = curves.thin_indices(len(s.x))
            stop = curves.end_x(run, axis)
            lines.append(Line(**style, x=s.x[keep], y=s.y[keep], run=run.name, end=run.status,
                              end_x=stop / scale if stop is not None else None,
                              end_y=float(s.y[-1]) if len(s.y) else None))
    return lines


def _smoothed(s: curves.Series, metric: str, options: Options) -> curves.Series:
    # Only training loss is smoothed: val loss is already an average over fixed batches at sparse evals,
    # and an EMA over those would shift it right.
    return curves.Series(s.x, curves.ema(s.y, options.smooth)) if metric == "train" and options.smooth else s


def _scaled(s: curves.Series, scale: float) -> curves.Series:
    return curves.Series(s.x / scale, s.y) if scale != 1.0 else s


def x_extent(lines: list[Line]) -> tuple[float, float] | None:
    xs = [v for line in lines for v in (*line.x, *([line.end_x] if line.end_x is not None else []))]
    return (min(xs), max(xs)) if xs else None


def section_charts(section: Section, options: Options) -> dict[str, list[Chart]]:
    """Per x axis: [validation loss, validation loss zoomed, training loss]."""
    colours = variant_colours(section)
    runs = [r for members in section.variants.values() for r in members]
    time_scale, unit = time_unit(runs)
    scales = {axis: (time_scale if axis == "time" else 1.0) for axis in curves.X_COLUMNS}
    val = {axis: lines_for(section, "val", axis, options, colours, scales[axis]) for axis in curves.X_COLUMNS}
    # plain --zoom numbers are in the zoom axis' own units (seconds for time), so its extent is too
    zoom_extent = x_extent(val[options.zoom_axis])
    numeric_extent = tuple(v * scales[options.zoom_axis] for v in zoom_extent) if zoom_extent else None
    charts = {}
    for axis in options.axes:
        label = x_label(axis, unit)
        train_title = f"training loss (EMA {options.smooth:g})" if options.smooth else "training loss"
        train = lines_for(section, "train", axis, options, colours, scales[axis])
        charts[axis] = [
            Chart("validation loss", label, Y_LABELS["val"], val[axis], log_y=options.log_y),
            _zoomed(val[axis], axis, label, options, numeric_extent, scales[axis]),
            Chart(train_title, label, Y_LABELS["train"], train, log_y=options.log_y),
        ]
    return charts


def _zoomed(lines: list[Line], axis: str, label: str, options: Options,
            numeric_extent: tuple[float, float] | None, scale: float) -> Chart:
    zoom = options.zoom
    extent = x_extent(lines)
    chart = Chart("validation loss — zoom", label, Y_LABELS["val"], lines, log_y=options.log_y)
    if extent is None:
        return chart
    other_axis = zoom.numeric_x and axis != options.zoom_axis
    chart.x_range = curves.zoom_x_range(zoom, extent, numeric_extent if other_axis else None, scale)
    fitted = curves.fit_y([(line.x, values) for line in lines
                           for values in (line.y, line.low, line.high) if values is not None],
                          chart.x_range, options.log_y)
    if fitted is not None or (zoom.y0 is not None and zoom.y1 is not None):
        fitted = fitted or (zoom.y0, zoom.y1)
        chart.y_range = (zoom.y0 if zoom.y0 is not None else fitted[0], zoom.y1 if zoom.y1 is not None else fitted[1])
    lo, hi = chart.x_range
    chart.title = f"validation loss — zoom on {_compact(lo)}–{_compact(hi)}"
    return chart


def _compact(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= 10 * factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.4g}"


def final_points(section: Section, rows: list[VariantRow]) -> list[FinalPoint]:
    colours = variant_colours(section)
    return [FinalPoint(row.label, colours[row.label], row.is_baseline, row.final, row.final_spread.mean,
                       row.final_spread.std, _note(row)) for row in rows if row.final_spread is not None]


def _note(row: VariantRow) -> str:
    if row.comparison is None:
        return ""
    verdict = "single seed" if row.verdict.startswith("single seed") else row.verdict
    return f"{row.comparison.pct:+.2f}% · {verdict}"
