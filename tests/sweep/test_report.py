"""The end-of-sweep report never drops a job: an unreadable summary is a row, and any job that did not end
completed or diverged (failed, left `running`, unreadable) makes the sweep exit non-zero, listed with its reason."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from ablate.sweep.report import SweepReport, collect_summaries


def _job(sweep, name, summary):
    (sweep / name).mkdir(parents=True)
    (sweep / name / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))


def _sweep(tmp_path, *extra):
    _job(tmp_path, "0_a", {"status": "completed", "final/val_loss": 2.0})
    _job(tmp_path, "1_b", {"status": "diverged", "diverged_at_step": 5})
    for name, summary in extra:
        _job(tmp_path, name, summary)
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})


def test_completed_and_diverged_jobs_end_the_sweep_with_exit_zero(tmp_path):
    SweepReport().on_multirun_end(_sweep(tmp_path))
    assert len(json.loads((tmp_path / "sweep.json").read_text())) == 2


def test_every_job_that_did_not_end_is_listed_and_the_exit_is_non_zero(tmp_path, capsys):
    config = _sweep(tmp_path, ("2_c", {"status": "failed", "error": "RuntimeError: boom"}),
                    ("3_d", {"status": "running"}), ("4_e", '{"status": "compl'))
    with pytest.raises(SystemExit) as exit_:
        SweepReport().on_multirun_end(config)
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "3 of 5 jobs did not complete" in out
    assert "2_c: failed (RuntimeError: boom)" in out and "3_d: running" in out
    assert "4_e: unreadable (summary.json cannot be read (JSONDecodeError" in out
    statuses = [r["status"] for r in collect_summaries(tmp_path)]
    assert statuses == ["completed", "diverged", "failed", "running", "unreadable"]


def test_a_sweep_with_no_summary_at_all_is_a_failure(tmp_path):
    with pytest.raises(SystemExit):
        SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
