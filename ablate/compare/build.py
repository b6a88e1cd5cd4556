"""Run dirs → sections → tables and charts → summary.md, summary.csv, *.png, report.html in one folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ablate.compare import cost, lr_sensitivity, page, plots_html, plots_png
from ablate.compare.charts import Options, final_points, section_charts
from ablate.compare.group import Section, group_runs
from ablate.compare.load import Run, load_runs
from ablate.compare.rows import VariantRow, section_rows
from ablate.compare.tables import csv_text, markdown
from ablate.compare.transfer import html_block, markdown_lines, split_by_scale, transfers
from ablate.track.files import atomic_write

AXIS_NAMES = {"step": "optimizer step", "tokens": "training tokens", "time": "training time"}


class NoRuns(Exception):
    """No run directory (a folder with a summary.json that has a status) under the inputs."""


@dataclass
class Report:
    out: Path
    runs: list[Run]
    sections: list[Section]
    tables: list[list[VariantRow]]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the whole report (e.g. superseded lr-tuning runs)


def build_report(inputs: list[str], out: Path, options: Options | None = None,
                 baselines: dict[str, str] | None = None, html: bool = True, png: bool = True) -> Report:
    options = options or Options()
    runs, tuning, superseded = lr_sensitivity.split_tuning(load_runs(inputs))  # study.tune_lr's stage 1 apart
    if not runs:
        raise NoRuns(f"no run directories (*/summary.json with a status) under: {' '.join(inputs)}")
    sections = split_by_scale(group_runs(runs, baselines))
    _unique_slugs(sections)
    tables = [section_rows(section) for section in sections]
    report = Report(out=Path(out), runs=runs, sections=sections, tables=tables, notes=superseded)
    report.out.mkdir(parents=True, exist_ok=True)
    header = _header(inputs, runs, options)
    if tuning:
        header[0] += f" (and {len(tuning)} lr-tuning runs, in the lr sensitivity section)"
    header += superseded
    html_figures = []
    for section, rows in zip(sections, tables):
        figures = []
        points = final_points(section, rows)
        if points:
            title = f"{section.title}: final validation loss per seed (dots) and mean ± std (diamond)"
            figures.append((f"{section.slug}-final", "final validation loss", plots_html.final_figure(points, title)
                            if html else None))
            if png:
                report.files.append(plots_png.final_png(points, title, report.out / f"{section.slug}_final.png"))
        costs = cost.cost_points(section, rows)
        if costs:
            title = f"{section.title}: cost vs quality (final val loss vs KV cache per sequence)"
            figures.append((f"{section.slug}-cost", "cost vs quality", cost.cost_figure(costs, title) if html else None))
            if png:
                report.files.append(cost.cost_png(costs, title, report.out / f"{section.slug}_cost.png"))
        missing = []
        for axis, charts in section_charts(section, options).items():
            if not any(len(line.x) for chart in charts for line in chart.lines):
                missing.append(AXIS_NAMES[axis])
                continue
            title = f"{section.title}: loss by {AXIS_NAMES[axis]}"
            figures.append((f"{section.slug}-{axis}", page.AXIS_TITLES[axis],
                            plots_html.curves_figure(charts, title) if html else None))
            if png:
                report.files.append(plots_png.curves_png(charts, title, report.out / f"{section.slug}_{axis}.png"))
        if missing:
            section.notes.append(f"no loss curves by {', '.join(missing)}: no run logged any")
        html_figures.append(figures)
    # the tables last: drawing may add notes to a section (e.g. that no run logged any curve)
    across = transfers(sections, tables)
    lrs = lr_sensitivity.sensitivities(tuning)
    if png:
        report.files += [lr_sensitivity.png(s, report.out / f"lr_sensitivity_{s.slug}.png") for s in lrs]
    extra = [*markdown_lines(across), *lr_sensitivity.markdown_lines(lrs)]
    report.files.insert(0, _write(report.out / "summary.md", markdown(sections, tables, header, extra)))
    report.files.insert(1, _write(report.out / "summary.csv", csv_text(sections, tables)))
    if html:
        report.files.append(_write(report.out / "report.html", page.render(
            sections, tables, html_figures, header, html_block(across) + lr_sensitivity.html_block(lrs))))
    return report


def _write(path: Path, text: str) -> Path:
    atomic_write(path, text)
    return path


def _unique_slugs(sections: list[Section]) -> None:
    """Section slugs name files and page anchors: make repeated titles distinct."""
    seen: dict[str, int] = {}
    for section in sections:
        count = seen.get(section.slug, 0)
        seen[section.slug] = count + 1
        if count:
            section.title = f"{section.title} ({count + 1})"


def _header(inputs: list[str], runs: list[Run], options: Options) -> list[str]:
    settings = [f"x: {', '.join(options.axes)}", f"seed band: {'min–max' if options.band == 'minmax' else '±1 std'}",
                f"zoom panel: {_zoom_text(options)}", f"training-loss EMA: {options.smooth:g}" if options.smooth
                else "training loss: raw", "log-scale loss" if options.log_y else "linear loss axis"]
    return [f"{len(runs)} runs from {', '.join(inputs)}", " · ".join(settings)]


def _zoom_text(options: Options) -> str:
    z = options.zoom

    def bound(value, pct):
        return "" if value is None else f"{value:g}{'%' if pct else ''}"

    text = f"x {bound(z.x0, z.x0_pct)}:{bound(z.x1, z.x1_pct)}"
    if z.numeric_x:
        text += f" ({options.zoom_axis})"
    if z.y0 is not None or z.y1 is not None:
        text += f", y {bound(z.y0, False)}:{bound(z.y1, False)}"
    return text
