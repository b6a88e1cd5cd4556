"""report.html checked as a person would open it: headless Chromium loads it offline, runs its scripts, and the
page's own check (written into <body data-render-check>) says no script failed and every chart has data.

Needs Debian's `chromium` (apt-get install -y chromium); skipped without it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="headless Chromium not installed (apt-get install -y chromium)")
# Flags that keep Chromium from reaching for a network this machine does not have, or a sandbox a container lacks.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000"]


def open_in_chromium(page: Path, profile: Path) -> tuple[dict, str, str]:
    """(the page's render check, the DOM after its scripts ran, Chromium's log)."""
    profile.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r'data-render-check="([^"]*)"', done.stdout)
    assert match, f"the page never finished its render check; chromium said:\n{done.stderr[-3000:]}"
    return json.loads(html.unescape(match.group(1))), done.stdout, done.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


def test_report_renders_every_chart_without_script_errors(mixed_report, tmp_path):
    page = mixed_report.out / "report.html"
    check, dom, log = open_in_chromium(page, tmp_path / "profile")
    charts = page.read_text().count('class="chart"')
    assert check == {"charts": charts, "empty": [], "errors": []}
    assert console_errors(log) == []
    # and the drawn DOM agrees: every chart div holds an SVG with plotted traces
    for div_id in re.findall(r'<div class="chart" id="([^"]+)"', page.read_text()):
        start = dom.index(f'id="{div_id}"')
        end = dom.find('<div class="chart"', start + 1)
        assert 'class="scatterlayer' in dom[start:end if end > 0 else None], f"{div_id} drew nothing"


def test_the_render_check_catches_script_errors_and_empty_charts(mixed_report, tmp_path):
    """Without this, a check that always passed would look the same as a page that works."""
    page = (mixed_report.out / "report.html").read_text()
    broken = page.replace("<script>var FIGURES", "<script>notAFunction();</script><script>var FIGURES", 1)
    broken = broken.replace("</script>\n<script>\n(function", "FIGURES[Object.keys(FIGURES)[0]].data = [];"
                                                               "</script>\n<script>\n(function", 1)
    assert broken.count("notAFunction") == 1 and broken.count(".data = [];") == 1
    path = tmp_path / "broken.html"
    path.write_text(broken)
    check, _, log = open_in_chromium(path, tmp_path / "profile")
    assert check["empty"] == [next(iter(re.findall(r'<div class="chart" id="([^"]+)"', page)))]
    assert any("notAFunction" in e for e in check["errors"])
    assert console_errors(log)


WIDTH_CHECK = """<script>window.addEventListener("load", function () { setTimeout(function () {
  var wide = [document.documentElement].concat(Array.from(document.querySelectorAll(".table-wrap, .chart")))
    .filter(function (el) { return el.scrollWidth > el.clientWidth + 1; })
    .map(function (el) { return (el.id || el.className || el.tagName) + ":" + el.scrollWidth + ">" + el.clientWidth; });
  document.body.setAttribute("data-too-wide", JSON.stringify(wide)); }, 500); });</script></body>"""


def test_no_horizontal_scrollbar_at_1400_px(mixed_report, tmp_path):
    """Neither the page nor any table or chart is wider than a 1400 px window (no horizontal scrollbar)."""
    page = tmp_path / "report.html"
    page.write_text((mixed_report.out / "report.html").read_text().replace("</body>", WIDTH_CHECK, 1))
    profile = tmp_path / "profile"
    profile.mkdir()
    done = subprocess.run([CHROMIUM, *FLAGS, "--window-size=1400,900", f"--user-data-dir={profile}", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r'data-too-wide="([^"]*)"', done.stdout)
    assert match, done.stderr[-2000:]
    assert json.loads(html.unescape(match.group(1))) == []
