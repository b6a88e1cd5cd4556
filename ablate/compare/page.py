"""report.html: one self-contained page (plotly.js inlined, no CDN) with a section per study.

The page checks itself after drawing: it records script errors and charts left without data in
`<body data-render-check="{...}">` and shows a red banner if anything failed, so a broken page is visible to a
reader and testable with `chromium --headless --dump-dom`.
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime

import plotly.io as pio
from plotly.offline import get_plotlyjs

from ablate.compare import stats
from ablate.compare.charts import variant_colours
from ablate.compare.group import Section
from ablate.compare.rows import VariantRow
from ablate.compare.tables import (COLUMNS, DEFINITIONS, PHASE_COLUMNS, cells, columns_for, optional_columns,
                                   section_heading)

AXIS_TITLES = {"step": "by optimizer step", "tokens": "by training tokens", "time": "by training time"}
CURVES_CAPTION = ("Thick line: mean over completed seeds (baseline in black); shaded: the seed band; dashed: a run "
                  "that did not complete, drawn up to where it stopped and marked there (✕ diverged, ■ failed, "
                  "▶ running). Click a legend entry to hide a variant, drag to zoom, double-click to reset.")
FINAL_CAPTION = "Each dot is one completed seed; the diamond and bar are the mean ± std over seeds."
COST_CAPTION = ("One point per variant: its mean final val loss (bar: ± std over seeds) against the decoding state "
                "one sequence needs at the full context (log scale). Lower and further left is better.")
VERDICT_CLASSES = {stats.BETTER: "better", stats.WORSE: "worse", stats.NOISE: "noise", stats.SINGLE: "single",
                   stats.BASELINE: "baseline"}

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1500px;
       padding: 0 24px 40px; color: #1b1b1b; }
h1 { margin: 24px 0 4px; } h2 { margin-top: 40px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
.meta, .note { color: #555; } .note { margin: 2px 0; font-size: 14px; }
table.results { border-collapse: collapse; width: 100%; font-size: 13px; margin: 10px 0 6px; }
/* cells wrap at their spaces ("4.0100 ± 0.0100 (n=3)" on two lines), so 18 columns fit 1400 px without scrolling */
.results th, .results td { border-bottom: 1px solid #e4e4e4; padding: 4px 5px; text-align: right;
                           white-space: normal; overflow-wrap: normal; }
.results th { background: #f5f5f5; white-space: normal; vertical-align: bottom; }
.table-wrap { overflow-x: auto; }
.results td:first-child, .results th:first-child { text-align: left; }
.results tr.baseline td { font-weight: 600; background: #fafafa; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 6px;
          vertical-align: -1px; }
.verdict { border-radius: 10px; padding: 1px 8px; }
.verdict.better { background: #d9f2dd; color: #145a22; } .verdict.worse { background: #fbdada; color: #7a1212; }
.verdict.noise { background: #ececec; color: #444; } .verdict.single { background: #fff1cc; color: #6b4b00; }
.flags { font-size: 13.5px; color: #7a4b00; }
.chart { min-height: 260px; }
#render-banner { display: none; background: #b00020; color: white; padding: 10px 14px; margin-top: 12px; }
nav a { margin-right: 14px; }
details { margin-top: 36px; }
"""

CHECK_SCRIPT = """
(function () {
  var config = {responsive: true, displaylogo: false, toImageButtonOptions: {format: "png", scale: 2}};
  var ids = Object.keys(FIGURES);
  var jobs = ids.map(function (id) {
    try { return Plotly.newPlot(id, FIGURES[id].data, FIGURES[id].layout, config); }
    catch (e) { window.renderErrors.push(id + ": " + e); return null; }
  });
  function report(extra) {
    var empty = ids.filter(function (id) {
      var gd = document.getElementById(id);
      var points = ((gd && gd.data) || []).reduce(function (n, t) { return n + ((t.x || []).length); }, 0);
      var drawn = gd ? gd.querySelectorAll(".scatterlayer .trace").length : 0;
      return !(points > 0 && drawn > 0);
    });
    var errors = window.renderErrors.concat(extra ? [String(extra)] : []);
    document.body.setAttribute("data-render-check", JSON.stringify({charts: ids.length, empty: empty, errors: errors}));
    if (errors.length || empty.length) {
      var banner = document.getElementById("render-banner");
      var problems = errors.concat(empty.map(function (id) { return id + " has no data"; }));
      banner.textContent = "Report problem: " + problems.join("; ");
      banner.style.display = "block";
    }
  }
  Promise.all(jobs).then(function () { report(null); }, function (err) { report(err); });
})();
"""


def _script_json(text: str) -> str:
    return text.replace("</", "<\\/")  # a "</script>" inside data must not end the script element


def _code(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _table(section: Section, rows: list[VariantRow]) -> str:
    colours = variant_colours(section)
    columns, optional = columns_for(section, rows), optional_columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    verdict_at = (PHASE_COLUMNS if section.phases else COLUMNS).index("verdict vs phase 0" if section.phases
                                                                      else "verdict")
    for row in rows:
        values = [html.escape(c) for c in cells(row, section.phases, optional)]
        values[0] = f'<span class="swatch" style="background:{colours[row.label]}"></span>{values[0]}'
        kind = VERDICT_CLASSES.get(row.verdict, "noise")
        values[verdict_at] = f'<span class="verdict {kind}">{values[verdict_at]}</span>'
        css = ' class="baseline"' if row.is_baseline else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
    return (f'<div class="table-wrap"><table class="results"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _flags(rows: list[VariantRow]) -> str:
    items = [f"<li><b>{html.escape(row.label)}</b> · <code>{html.escape(run)}</code>: {html.escape(message)}</li>"
             for row in rows for run, message in row.flags]
    return f'<div class="flags">Flagged runs:<ul>{"".join(items)}</ul></div>' if items else ""


def render(sections: list[Section], tables: list[list[VariantRow]], figures: list[list[tuple[str, str, object]]],
           header: list[str], extra_html: str = "") -> str:
    """figures[i]: (div id, heading, plotly Figure) for section i, in display order."""
    nav = " ".join(f'<a href="#{s.slug}">{html.escape(s.title)}</a>' for s in sections)
    parts = []
    all_figures = {}
    for section, rows, section_figures in zip(sections, tables, figures):
        notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in section.notes)
        charts = []
        for div_id, heading, figure in section_figures:
            all_figures[div_id] = figure
            caption = (CURVES_CAPTION if div_id.endswith(tuple(AXIS_TITLES)) else
                       COST_CAPTION if div_id.endswith("-cost") else FINAL_CAPTION)
            charts.append(f'<h3>{html.escape(heading)}</h3><p class="note">{caption}</p>'
                          f'<div class="chart" id="{div_id}"></div>')
        parts.append(f'<section id="{section.slug}"><h2>{html.escape(section.title)}</h2>'
                     f'<p class="meta">{html.escape(section_heading(section, rows))}</p>{notes}'
                     f'{_table(section, rows)}{_flags(rows)}{"".join(charts)}</section>')
    figures_json = "{" + ",".join(f"{json.dumps(k)}: {pio.to_json(f, validate=False)}"
                                  for k, f in all_figures.items()) + "}"
    definitions = "".join(f"<li>{_code(html.escape(line[2:]))}</li>" for line in DEFINITIONS.splitlines() if line)
    meta = "".join(f'<p class="meta">{html.escape(line)}</p>' for line in header)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ablate · comparison</title><style>{STYLE}</style>
<script>window.renderErrors = []; window.addEventListener("error", function (e) {{
  window.renderErrors.push(String(e.message || e)); }});</script>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>ablate · comparison</h1>
<p class="meta">generated {datetime.now():%Y-%m-%d %H:%M}</p>{meta}
<div id="render-banner"></div>
<nav>{nav}</nav>
{"".join(parts)}{extra_html}
<details open><summary><b>Definitions</b></summary><ul>{definitions}</ul></details>
<script>var FIGURES = {_script_json(figures_json)};</script>
<script>{CHECK_SCRIPT}</script>
</body></html>
"""
