"""Progress: a live bar on a terminal; with stdout a pipe or a file (SLURM, nohup), one line per log/eval interval
that arrives while the run goes on."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
from rich.console import Console

from ablate.training import progress
from ablate.training.progress import ProgressBar, ProgressLines, progress_display
from tests.conftest import TINY

LINE = re.compile(r"\| step +(\d+)/20 \| train loss \d+\.\d{3}( \| val loss \d+\.\d{3})? \| [\d,]+ tok/s "
                  r"\| elapsed \d+:\d\d:\d\d \| eta \d+:\d\d:\d\d$")


def test_a_piped_run_logs_a_line_per_interval_while_it_runs(tmp_path):
    """train=smoke: 20 steps, log_every 5, eval_every 10."""
    command = [sys.executable, "-m", "ablate.run", *TINY, f"hydra.run.dir={tmp_path / 'run'}"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
        lines, running_at_first = [], None
        for line in run.stdout:
            lines.append(line.rstrip("\n"))
            if running_at_first is None and LINE.search(lines[-1]):
                running_at_first = run.poll() is None  # 15 steps, two evals and the sample still to come
        assert run.wait(timeout=300) == 0, "\n".join(lines)
    matches = [m for m in map(LINE.search, lines) if m]
    assert [int(m.group(1)) for m in matches] == [5, 10, 15, 20], "\n".join(lines)
    assert [m.group(2) is not None for m in matches] == [False, True, False, True], "val loss at eval steps"
    assert running_at_first, "the first line arrived only after the run ended"
    assert not any("━" in line for line in lines), "no progress bar in a log file"


@pytest.mark.parametrize(("terminal", "display"), [(True, ProgressBar), (False, ProgressLines)])
def test_a_terminal_keeps_the_live_bar(monkeypatch, terminal, display):
    monkeypatch.setattr(Console, "is_terminal", property(lambda self: terminal))
    assert type(progress_display("run", 100, 0, None)) is display


def test_a_resumed_run_counts_its_eta_from_its_own_pace(monkeypatch, caplog):
    clock = iter([100.0, 130.0])  # entered at 100 s; 30 s later it is at step 70, resumed at step 40
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger=progress.__name__), ProgressLines("attention=mla", 100, 40) as lines:
        lines.update(61)  # a step that neither logged nor evaluated prints nothing
        lines.update(70, loss=2.91349, tok_s=41210.4, val=2.9866)
    assert caplog.messages == ["attention=mla | step  70/100 | train loss 2.913 | val loss 2.987 | 41,210 tok/s | "
                               "elapsed 0:00:30 | eta 0:00:30"]
