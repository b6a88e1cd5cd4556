"""Resuming: a run interrupted at any moment continues from its last checkpoint and ends exactly where an
uninterrupted run ends (CPU, bit for bit)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

import ablate
from ablate.training import train

TINY = ["model=tiny", "train=smoke", "data.max_bytes=3000000", "device=cpu", "logger=none"]
LONG = ["train.max_steps=200", "train.checkpoint_every=20", "train.eval_every=20", "train.log_every=10"]


def _train_rows(run_dir):
    _, rows, summary = ablate.load_run(run_dir)
    return [(r["step"], r.get("train/loss"), r.get("val/loss")) for r in rows], summary


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    ablate.train(ablate.compose([*TINY, *LONG, f"out_dir={run_dir}"]))
    return _train_rows(run_dir)


def test_failed_run_resumes_from_checkpoint_and_matches(tmp_path, uninterrupted, caplog):
    """The failure comes from a trainer hook, not the config: the failed and the resuming run have one config
    hash, as a rerun after a real crash does."""
    run_dir = tmp_path / "run"
    cfg = ablate.compose([*TINY, *LONG, f"out_dir={run_dir}"])

    def fail_at_75(state):
        if state.step == 75:
            raise RuntimeError("injected failure at step 75")

    with pytest.raises(RuntimeError, match="injected failure"):
        train(cfg, hooks=[fail_at_75])
    failed = json.loads((run_dir / "summary.json").read_text())
    assert failed["status"] == "failed" and "injected failure" in failed["error"]
    caplog.set_level(logging.INFO, logger="ablate")
    summary = ablate.train(ablate.compose([*TINY, *LONG, f"out_dir={run_dir}"]))  # the fault is gone: resume
    assert summary["config_hash"] == failed["config_hash"]
    assert "resumed from the checkpoint at step 60" in caplog.text
    rows, _ = _train_rows(run_dir)
    assert summary["status"] == "completed"
    assert rows == uninterrupted[0]
    assert summary["final/val_loss"] == uninterrupted[1]["final/val_loss"]


def test_kill_9_then_rerun_ends_with_the_uninterrupted_loss(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "ablate.run", *TINY, *LONG, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # land somewhere between checkpoints
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = json.loads((run_dir / "summary.json").read_text())
    assert interrupted["status"] == "running", "the kill must land before the end for this test to mean anything"

    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from the checkpoint at step" in result.stdout + result.stderr
    rows, summary = _train_rows(run_dir)
    assert summary["status"] == "completed"
    assert summary["final/val_loss"] == uninterrupted[1]["final/val_loss"]
    assert rows == uninterrupted[0]


def test_changed_config_starts_fresh(tmp_path):
    run_dir = tmp_path / "run"
    ablate.train(ablate.compose([*TINY, f"out_dir={run_dir}"]))
    summary = ablate.train(ablate.compose([*TINY, "train.lr=1e-3", f"out_dir={run_dir}"]))
    assert summary["status"] == "completed"
    _, rows, on_disk = ablate.load_run(run_dir)
    assert on_disk["config_hash"] == summary["config_hash"]
    assert [r["step"] for r in rows if "val/loss" in r] == [0, 10, 20]  # no rows left over from the first config
