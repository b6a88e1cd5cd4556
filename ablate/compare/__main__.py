"""python -m ablate.compare <sweep dir | run dirs | glob> [--out DIR] [--x step|tokens|time] [--smooth W]
[--zoom x0:x1[,y0:y1]] [--log-y] [--band minmax|std] [--baseline key=value] [--no-html] [--no-png] [--strict]"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ablate.compare.build import NoRuns, build_report
from ablate.compare.charts import Options
from ablate.compare.curves import DEFAULT_ZOOM, X_COLUMNS, parse_zoom
from ablate.compare.load import SkippedWarning
from ablate.compare.tables import COLUMNS, PHASE_COLUMNS, cells, columns_for, section_heading
from ablate.sweep.manifest import ManifestWarning


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ablate.compare",
        description="Compare runs from their run directories (never W&B): report.html, PNG figures, "
                    "summary.md and summary.csv.")
    p.add_argument("inputs", nargs="+", help="sweep dirs (searched recursively), run dirs, or glob patterns")
    p.add_argument("--out", type=Path, help="output folder (default: <input>/compare for a single input "
                                            "folder, else ./compare)")
    p.add_argument("--x", choices=list(X_COLUMNS), action="append", dest="axes",
                   help="x-axis of the curves; repeatable (default: step, tokens and time)")
    p.add_argument("--smooth", type=float, default=0.0, metavar="W",
                   help="EMA weight in [0, 1) for training-loss curves, e.g. 0.9 (default 0: raw)")
    p.add_argument("--zoom", default=DEFAULT_ZOOM, metavar="x0:x1[,y0:y1]",
                   help="window of the zoom panel: numbers in --x units (seconds for time) or %% of the x range; "
                        f"open ends allowed (default '{DEFAULT_ZOOM.replace('%', '%%')}', the last 30%%)")
    p.add_argument("--log-y", action="store_true", help="log-scale loss axes")
    p.add_argument("--band", choices=["minmax", "std"], default="minmax",
                   help="seed band around the mean curve: min–max over seeds or ±1 std (default minmax)")
    p.add_argument("--baseline", action="append", default=[], metavar="KEY=VALUE",
                   help="baseline option of a factor, e.g. attention=mha or phase=0 (repeatable); "
                        "default: the study's own, else the sweep's manifest.json (an ad-hoc sweep: the first "
                        "option given), else the one conf/study/<factor>.yaml names")
    p.add_argument("--no-html", action="store_true", help="skip report.html")
    p.add_argument("--no-png", action="store_true", help="skip the PNG figures")
    p.add_argument("--strict", action="store_true",
                   help="a run, line or manifest that cannot be read is an error (exit 1), not a warning")
    return p


def options_from(args: argparse.Namespace, p: argparse.ArgumentParser) -> Options:
    if not 0.0 <= args.smooth < 1.0:
        p.error(f"--smooth {args.smooth}: must be in [0, 1)")
    try:
        zoom = parse_zoom(args.zoom)
    except ValueError as e:
        p.error(str(e))
    axes = tuple(dict.fromkeys(args.axes)) if args.axes else tuple(X_COLUMNS)
    return Options(axes=axes, smooth=args.smooth, zoom=zoom, zoom_axis=axes[0] if args.axes else "step",
                   log_y=args.log_y, band=args.band)


def baselines_from(items: list[str], p: argparse.ArgumentParser) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            p.error(f"--baseline {item!r}: expected KEY=VALUE, e.g. attention=mha")
        pairs[key.strip()] = value.strip()
    return pairs


def default_out(inputs: list[str]) -> Path:
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        return Path(inputs[0]) / "compare"
    return Path("compare")


# Terminal: the decision columns only; summary.md has them all. (general table column, phases table column)
TERMINAL_COLUMNS = [("variant", "phase"), ("final val loss", "final val loss"),
                    ("% vs baseline", "% vs phase 0 (cumulative)"), ("test", "test"), ("p (Holm)", "p (Holm)"),
                    ("verdict", "verdict vs phase 0"), ("runs", "runs")]


def terminal_table(section, rows) -> Table:
    table = Table(title=f"{section.title} — {section_heading(section, rows)}", title_justify="left")
    template, titles = (PHASE_COLUMNS if section.phases else COLUMNS), columns_for(section)
    picks = [template.index(phase if section.phases else general) for general, phase in TERMINAL_COLUMNS]
    for i in picks:
        name = titles[i]
        table.add_column(name, justify="right" if "loss" in name or "%" in name or "p " in name else "left")
    for row in rows:
        values = cells(row, section.phases)
        table.add_row(*(values[i] for i in picks))
    return table


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    """A skipped file or line, one line on stderr: `warning: <path>: <what>`."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    options = options_from(args, p)
    baselines = baselines_from(args.baseline, p)
    out = args.out or default_out(args.inputs)
    console = Console()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error" if args.strict else "always", SkippedWarning)
            warnings.simplefilter("error" if args.strict else "always", ManifestWarning)
            warnings.showwarning = _show
            report = build_report(args.inputs, out, options, baselines, html=not args.no_html, png=not args.no_png)
    except (NoRuns, FileNotFoundError) as e:
        console.print(f"[red]{e}[/red]")
        return 2
    except (SkippedWarning, ManifestWarning) as e:
        console.print(f"[red]--strict: {e}[/red]")
        return 1
    for note in report.notes:
        console.print(f"[dim]{note}[/dim]")
    for section, rows in zip(report.sections, report.tables):
        console.print(terminal_table(section, rows))
        for note in section.notes:
            console.print(f"  [dim]{note}[/dim]")
    console.print(f"{len(report.runs)} runs, {len(report.sections)} sections → {report.out}: "
                  + ", ".join(f.name for f in report.files[:4]) + (" …" if len(report.files) > 4 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
