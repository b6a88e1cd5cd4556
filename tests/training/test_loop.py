"""The training loop end to end on model=tiny: run-dir contract, determinism, divergence, failure. Faults come from
a test-only component (tests/fixtures), never from the trainer's config."""

from __future__ import annotations

import json

import pytest
import torch

import ablate
from ablate.spec import FAMILIES
from tests.fixtures.variants import FIXTURE_OVERRIDES

RUN_FILES = ("config.yaml", "overrides.yaml", "metrics.jsonl", "summary.json", "sample.txt", "checkpoints/last.pt")


def _train(tmp_path, overrides, name="run"):
    cfg = ablate.compose([*overrides, f"out_dir={tmp_path / name}"])
    return ablate.train(cfg, overrides), tmp_path / name


def test_run_dir_contract(tmp_path, tiny_overrides):
    summary, run_dir = _train(tmp_path, tiny_overrides + ["attention=gqa", "pos_enc=rope"])
    for name in RUN_FILES:
        assert (run_dir / name).exists(), name
    cfg, rows, on_disk = ablate.load_run(run_dir)
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["status"] == "completed"
    assert summary["attention"] == "gqa" and summary["pos_enc"] == "rope"
    assert set(FAMILIES) <= set(summary)
    for key in ("final/val_loss", "best/val_loss", "params/total", "params/non_embedding", "params/active",
                "flops_per_token", "time_s", "tokens", "seed", "config_hash"):
        assert key in summary, key
    train_rows = [r for r in rows if "train/loss" in r]
    eval_rows = [r for r in rows if "val/loss" in r]
    assert {"step", "tokens", "time_s", "lr", "train/loss", "perf/tokens_per_s"} <= set(train_rows[-1])
    assert {"step", "tokens", "time_s", "val/loss", "val/ppl", "val/acc"} <= set(eval_rows[-1])
    assert eval_rows[0]["step"] == 0 and eval_rows[-1]["step"] == summary["steps"] == 20
    assert summary["tokens"] == 20 * 8 * 64
    assert summary["params/active"] == summary["params/total"]  # dense: every parameter is active
    assert summary["final/val_loss"] == eval_rows[-1]["val/loss"] < eval_rows[0]["val/loss"]
    assert summary["best/val_loss"] == min(r["val/loss"] for r in eval_rows)
    assert cfg.attention.name == "gqa"
    state = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)  # tensors and plain values only
    assert {"model", "optimizer", "step", "rng", "config", "batches"} <= set(state) and state["step"] == 20


def test_cpu_rerun_is_bit_for_bit(tmp_path, tiny_overrides):
    first, _ = _train(tmp_path, tiny_overrides, "a")
    second, _ = _train(tmp_path, tiny_overrides, "b")
    assert first["final/val_loss"] == second["final/val_loss"]
    assert first["final/train_loss"] == second["final/train_loss"]
    assert first["config_hash"] == second["config_hash"]
    other_seed, _ = _train(tmp_path, tiny_overrides + ["seed=1"], "c")
    assert other_seed["final/val_loss"] != first["final/val_loss"]
    assert other_seed["config_hash"] != first["config_hash"]


def test_nan_loss_ends_diverged_without_exception(tmp_path, tiny_overrides):
    summary, run_dir = _train(tmp_path, tiny_overrides + [*FIXTURE_OVERRIDES, "ffn=faulty", "ffn.nan_at_step=7"])
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 7
    _, rows, on_disk = ablate.load_run(run_dir)
    assert on_disk["status"] == "diverged"
    assert any(r["step"] == 5 and "train/loss" in r for r in rows), "metrics before divergence are kept"


def test_exception_is_recorded_then_raised(tmp_path, tiny_overrides):
    with pytest.raises(RuntimeError, match="injected failure"):
        _train(tmp_path, tiny_overrides + [*FIXTURE_OVERRIDES, "ffn=faulty", "ffn.raise_at_step=3"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "injected failure" in summary["error"]
    assert "Traceback" in (tmp_path / "run" / "error.txt").read_text()


def test_spec_error_refused_before_anything_exists(tmp_path, tiny_overrides):
    """A config error is one line before any work, and leaves no run dir (a typo run must not be counted later)."""
    from ablate.spec import SpecError

    with pytest.raises(SpecError, match="n_kv_heads=3 must divide model.n_heads=4"):
        _train(tmp_path, tiny_overrides + ["attention=gqa", "attention.n_kv_heads=3"])
    assert not (tmp_path / "run").exists()


def test_corpus_too_short_is_one_clear_error(tmp_path, tiny_overrides):
    from ablate.data import DataError

    with pytest.raises(DataError, match="fewer than one window"):
        _train(tmp_path, tiny_overrides + ["data.max_bytes=2000"])


def test_fault_injection_is_not_a_trainer_config_key():
    from hydra.errors import ConfigCompositionException

    for key in ("debug.nan_at_step", "debug.raise_at_step"):
        with pytest.raises(ConfigCompositionException, match=key):
            ablate.compose([f"{key}=3"])
