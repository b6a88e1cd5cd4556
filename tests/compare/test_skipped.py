"""compare never drops a run or cuts a curve silently: each file or line it cannot read is one warning naming it,
and --strict makes that an error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.compare.fake_runs import write_run


def _runs(tmp_path):
    write_run(tmp_path / "runs" / "a", 2.5, attention="mha")
    write_run(tmp_path / "runs" / "b", 2.4, attention="mqa")
    metrics = tmp_path / "runs" / "b" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines.insert(2, '{"step": 7, "train/lo')  # a damaged line in the middle
    metrics.write_text("\n".join(lines) + "\n")
    (tmp_path / "runs" / "c").mkdir()
    (tmp_path / "runs" / "c" / "summary.json").write_text('{"status": "compl')
    return len(lines) - 1


def _compare(tmp_path, *flags):
    return subprocess.run([sys.executable, "-m", "ablate.compare", str(tmp_path / "runs"), "--out",
                           str(tmp_path / "out"), "--no-html", "--no-png", *flags], capture_output=True, text=True)


def test_each_unreadable_file_or_line_is_said_and_the_rest_is_kept(tmp_path):
    kept = _runs(tmp_path)
    result = _compare(tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any("runs/c/summary.json: cannot be read (JSONDecodeError" in w and "left out" in w for w in warnings)
    assert any("runs/b/metrics.jsonl: 1 line(s) cannot be read and were left out (line 3)" in w for w in warnings)
    from ablate.compare.load import SkippedWarning, read_metrics

    with pytest.warns(SkippedWarning, match="line 3"):
        assert len(read_metrics(tmp_path / "runs" / "b" / "metrics.jsonl")) == kept  # the rows after it are kept


def test_strict_makes_it_an_error(tmp_path):
    _runs(tmp_path)
    result = _compare(tmp_path, "--strict")
    assert result.returncode == 1 and "--strict:" in result.stdout
    assert not (tmp_path / "out" / "summary.csv").exists()  # no report that looks complete
