"""A real Hydra multirun in a subprocess: one job fails, the others complete, every job is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ablate


def test_multirun_failure_does_not_lose_other_jobs(tmp_path):
    # With 3 heads, gqa's default n_kv_heads=2 cannot divide them: that job fails validation; mha and mqa run.
    cmd = [sys.executable, "-m", "ablate.run", "-m", "attention=mha,mqa,gqa", "pos_enc=rope", "model=tiny",
           "model.n_heads=3", "model.d_model=48", "train=smoke", "data.max_bytes=3000000", "device=cpu",
           f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "offline", "COLUMNS": "160"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]  # a failed job makes the sweep exit non-zero, at the end

    summaries = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")}
    statuses = {s["attention"]: s["status"] for s in summaries.values()}
    assert statuses == {"mha": "completed", "mqa": "completed", "gqa": "failed"}
    failed_dir = next(tmp_path / n for n, s in summaries.items() if s["status"] == "failed")
    assert "n_kv_heads=2 must divide model.n_heads=3" in (failed_dir / "error.txt").read_text()
    for name, summary in summaries.items():
        if summary["status"] == "completed":  # each job has its own W&B run, named by its overrides
            runs = list((tmp_path / name / "wandb").glob("offline-run-*"))
            assert len(runs) == 1
    names = {s["overrides"] for s in summaries.values()}
    assert "attention=mqa,data.max_bytes=3000000,model.d_model=48,model.n_heads=3,model=tiny," \
           "pos_enc=rope,train=smoke" in names

    # Nothing leaks from one job into the next (seed, RNG, W&B run, globals): the second job of the sweep ends
    # exactly where the same job run alone, in this process, ends.
    mqa = next(s for s in summaries.values() if s["attention"] == "mqa")
    alone = ablate.train(ablate.compose(["attention=mqa", *cmd[5:-1], "logger=none", f"out_dir={tmp_path / 'alone'}"]))
    assert alone["final/val_loss"] == mqa["final/val_loss"]

    table = result.stdout
    assert "3 jobs" in table and "completed" in table and "failed" in table and "tokens/s" in table
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["status"] for r in rows] == ["completed", "completed", "failed"]
