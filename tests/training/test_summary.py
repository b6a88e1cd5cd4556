"""RunSummary: a run ends once, from running; summary.json keeps the documented key names."""

from __future__ import annotations

from pathlib import Path

import pytest

import ablate
from ablate.training.summary import RunSummary, StatusError

# README "Outputs": summary.json's keys (a public contract), plus params/active.
DOCUMENTED = {"status", "final/val_loss", "best/val_loss", "final/train_loss", "final/val_ppl", "final/val_acc",
              "params/total", "params/non_embedding", "params/active", "flops_per_token", "time_s", "tokens", "steps",
              "perf/tokens_per_s", "perf/peak_mem_bytes", "pos_enc", "attention", "ffn", "norm", "placement",
              "dropout", "optim", "model", "data", "seed", "config_hash", "run_dir", "overrides", "device", "wandb_id",
              "study", "varies", "baseline", "phase", "error", "diverged_at_step", "final/val_recall_acc"}


def _summary(*overrides: str) -> RunSummary:
    cfg = ablate.compose(["model=tiny", *overrides])
    return RunSummary.start(cfg, ["attention=gqa", "logger=none", "seed=1"], "0123abcd", Path("runs/a"))


def test_a_new_summary_is_running_with_its_identity():
    summary = _summary("attention=gqa").to_dict()
    assert summary == {"status": "running", "pos_enc": "learned", "attention": "gqa", "ffn": "relu",
                       "norm": "layernorm", "placement": "pre", "dropout": "on", "optim": "adamw", "model": "tiny",
                       "data": "stdlib", "seed": 0, "config_hash": "0123abcd", "run_dir": "runs/a", "overrides": "attention=gqa,seed=1"}


@pytest.mark.parametrize("end", ["complete", "diverge", "fail"])
def test_a_run_ends_once_from_running(end):
    summary = _summary()
    ends = {"complete": summary.complete, "diverge": lambda: summary.diverge(7),
            "fail": lambda: summary.fail(RuntimeError("boom\nmore"))}
    ends[end]()
    assert summary.status == {"complete": "completed", "diverge": "diverged", "fail": "failed"}[end]
    for other in ends.values():
        with pytest.raises(StatusError, match=f"a {summary.status} run cannot become"):
            other()
    with pytest.raises(AttributeError):
        summary.status = "running"  # only the transitions change it


def test_every_key_serializes_under_its_documented_name():
    summary = _summary("+study=ffn")
    summary.wandb_id, summary.device = "abc123", "cuda"
    summary.params_total, summary.params_non_embedding, summary.params_active = 100, 60, 80
    summary.flops_per_token, summary.peak_mem_bytes = 600, 2**30
    summary.record_eval({"val/loss": 2.0, "val/ppl": 7.4, "val/acc": 0.5, "val/recall_acc": 0.5})
    summary.record_eval({"val/loss": 3.0, "val/ppl": 20.1, "val/acc": 0.4, "val/recall_acc": 0.4})
    summary.record_train({"train/loss": 2.5})
    summary.steps, summary.tokens, summary.time_s, summary.tokens_per_s = 20, 1000, 1.5, 700.0
    summary.study["phase"] = 2
    summary.diverge(21)
    summary.error = "x"  # never both in a real run; here to see every key at once
    out = summary.to_dict()
    assert set(out) == DOCUMENTED
    assert (out["final/val_loss"], out["best/val_loss"], out["final/val_recall_acc"]) == (3.0, 2.0, 0.4)
    assert (out["study"], out["varies"], out["baseline"]) == ("ffn", "ffn", "relu")
    assert out["status"] == "diverged" and out["diverged_at_step"] == 21


def test_a_resumed_run_carries_results_and_wandb_run_but_not_status():
    summary = _summary()
    summary.carry_over({"status": "running", "best/val_loss": 1.5, "final/val_loss": 1.7, "wandb_id": "w1",
                        "steps": 60, "error": "old"})
    out = summary.to_dict()
    assert out["status"] == "running" and out["best/val_loss"] == 1.5 and out["wandb_id"] == "w1"
    assert "steps" not in out and "error" not in out
    summary.record_eval({"val/loss": 1.6, "val/ppl": 5.0, "val/acc": 0.5})
    assert summary.best_val_loss == 1.5 and summary.final_val_loss == 1.6
