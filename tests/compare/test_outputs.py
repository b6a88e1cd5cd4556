"""The files a comparison writes, and the command end to end."""

from __future__ import annotations

import csv
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.compare.__main__ import main
from ablate.compare.plots_png import CURVES_SIZE_IN, DPI, final_size_in

ROOT = Path(__file__).resolve().parents[2]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_report_sections_and_files(mixed_report):
    assert [s.title for s in mixed_report.sections] == ["attention", "ffn", "phases"]
    names = sorted(p.name for p in mixed_report.out.iterdir())
    assert names == sorted(["summary.md", "summary.csv", "report.html",
                            *(f"{s}_{kind}.png" for s in ("attention", "ffn", "phases")
                              for kind in ("final", "step", "tokens", "time"))])


def test_pngs_are_images_of_the_documented_size(mixed_report):
    curves_px = (round(CURVES_SIZE_IN[0] * DPI), round(CURVES_SIZE_IN[1] * DPI))
    for path in mixed_report.out.glob("*_step.png"):
        assert path.stat().st_size > 20_000  # three panels of lines, not a blank canvas
        assert png_size(path) == curves_px
    final = mixed_report.out / "attention_final.png"
    w, h = final_size_in(3)
    assert png_size(final) == (round(w * DPI), round(h * DPI))


def test_summary_files(mixed_report):
    text = (mixed_report.out / "summary.md").read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## attention", "## ffn", "## phases", "## Definitions"]
    assert "no study info in summary.json: the varied factor (ffn) was found" in text
    assert "1 completed, 1 failed" not in text  # failed gelu is its own variant
    assert "| gelu | 0.003 | – | – |" in text and "1 failed" in text  # its lr, then no result
    rows = list(csv.DictReader((mixed_report.out / "summary.csv").open()))
    assert {r["section"] for r in rows} == {"attention", "ffn", "phases"}
    phases = [r for r in rows if r["section"] == "phases"]
    assert [r["phase"] for r in phases] == ["0", "1", "2"]
    assert float(phases[2]["pct_vs_baseline"]) == pytest.approx(100 * (4.405 - 4.805) / 4.805)


def test_html_is_self_contained(mixed_report):
    page = (mixed_report.out / "report.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc=", page) and "<link" not in page  # no CDN, nothing fetched
    assert "Plotly.newPlot" in page and page.count('class="chart"') == 12
    assert "data-render-check" in page


def test_command_end_to_end(mixed_sweep, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "ablate.compare", str(mixed_sweep), "--out", str(out),
                           "--x", "step", "--zoom", "50:,3.7:4.2", "--log-y", "--smooth", "0.8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert "better" in done.stdout and "phase" in done.stdout
    assert sorted(p.name for p in out.glob("attention_*.png")) == ["attention_final.png", "attention_step.png"]
    assert (out / "report.html").exists() and (out / "summary.md").exists()
    assert "zoom panel: x 50: (step), y 3.7:4.2" in (out / "summary.md").read_text()


def test_default_out_is_inside_a_single_input_dir(tmp_path):
    from tests.compare.fake_runs import write_run

    write_run(tmp_path / "sweep" / "a", 4.0)
    write_run(tmp_path / "sweep" / "b", 3.9, attention="gqa")
    assert main([str(tmp_path / "sweep"), "--no-html", "--no-png"]) == 0
    assert sorted(p.name for p in (tmp_path / "sweep" / "compare").iterdir()) == ["summary.csv", "summary.md"]


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--x", "--smooth", "--zoom", "--log-y", "--band", "--baseline", "--no-html", "--no-png"):
        assert flag in text


def test_command_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no run directories" in capsys.readouterr().out
    assert main([str(tmp_path / "missing*"), "--out", str(tmp_path / "o")]) == 2
    for bad in (["--zoom", "last"], ["--smooth", "1.5"], ["--baseline", "mha"], ["--x", "epoch"]):
        with pytest.raises(SystemExit) as exit_info:
            main([str(tmp_path), *bad])
        assert exit_info.value.code == 2
