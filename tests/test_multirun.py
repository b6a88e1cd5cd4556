"""A real Hydra multirun in a subprocess: jobs fail while training, the others complete, every job is recorded.
(A config error no longer gets this far: the sweeper validates every job before the first starts.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ablate
from tests.fixtures.variants import FIXTURE_OVERRIDES, REPO_ROOT


def test_multirun_failure_does_not_lose_other_jobs(tmp_path):
    # The test-only ffn=faulty is relu's MLP; with raise_at_step=3 its job fails at step 3, the others complete.
    cmd = [sys.executable, "-m", "ablate.run", "-m", "attention=mha,mqa", "ffn=faulty", "ffn.raise_at_step=null,3",
           "pos_enc=rope", "model=tiny", "train=smoke", "data.max_bytes=3000000", "device=cpu", *FIXTURE_OVERRIDES,
           f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "offline", "COLUMNS": "160", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]  # a failed job makes the sweep exit non-zero, at the end

    summaries = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")}
    statuses = sorted((s["attention"], "raise_at_step=3" in s["overrides"], s["status"]) for s in summaries.values())
    assert statuses == [("mha", False, "completed"), ("mha", True, "failed"), ("mqa", False, "completed"),
                        ("mqa", True, "failed")]
    for name, summary in summaries.items():
        if summary["status"] == "failed":
            assert "ffn.raise_at_step=3: injected failure" in (tmp_path / name / "error.txt").read_text()
        else:  # each job has its own W&B run, named by its overrides
            assert len(list((tmp_path / name / "wandb").glob("offline-run-*"))) == 1
    names = {s["overrides"] for s in summaries.values()}
    assert "attention=mqa,data.max_bytes=3000000,ffn.raise_at_step=null,ffn=faulty,model=tiny,pos_enc=rope," \
           "train=smoke" in names

    # Nothing leaks from one job into the next (seed, RNG, W&B run, globals): the third job of the sweep, after a
    # failed one, ends exactly where the same job run alone, in this process, ends.
    mqa = next(s for s in summaries.values() if s["attention"] == "mqa" and s["status"] == "completed")
    alone = ablate.train(ablate.compose(["attention=mqa", "ffn=faulty", "ffn.raise_at_step=null", *cmd[7:-1],
                                         "logger=none", f"out_dir={tmp_path / 'alone'}"]))
    assert alone["final/val_loss"] == mqa["final/val_loss"]

    table = result.stdout
    assert "4 jobs" in table and "completed" in table and "failed" in table and "tokens/s" in table
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["status"] for r in rows] == ["completed", "failed", "completed", "failed"]
