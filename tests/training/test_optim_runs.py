"""The optim group in real runs: the default trains exactly as before the group existed (the config hashes
recorded then, the same weights); optim=muon diverges at the exact step, is refused before its run dir exists,
runs through `python -m ablate.run` as a study, and compare groups runs by it (resume: tests/training/test_muon.py)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import ablate
from ablate.compare.group import group_runs
from ablate.compare.load import load_runs
from ablate.track import config_hash
from ablate.training import loop
from tests.compare.fake_runs import write_run
from tests.conftest import TINY
from tests.fixtures.variants import FIXTURE_OVERRIDES, REPO_ROOT

# config_hash of these configs at commit 275c179, before the optim group existed: the default must keep them, or
# every finished run would be trained again and compare would split it from new runs.
HASHES_BEFORE = {(): "21c4e5080511d46d", tuple(TINY): "7b23ac2bf437a950",
                 ("model=tiny", "train=smoke", "logger=none", "ffn=swiglu", "seed=1"): "d08a64f04cb03d71"}


@pytest.mark.parametrize("overrides", list(HASHES_BEFORE), ids=lambda o: ",".join(o) or "defaults")
def test_optim_adamw_keeps_the_config_hash_of_runs_before_the_group(overrides):
    assert config_hash(ablate.compose([*overrides, "optim=adamw"])) == HASHES_BEFORE[overrides]
    assert config_hash(ablate.compose([*overrides, "optim=muon"])) != HASHES_BEFORE[overrides]


def train(run_dir, *overrides, hooks=()):
    every = [*TINY, *overrides]
    return loop.train(ablate.compose([*every, f"out_dir={run_dir}"]), every, hooks=hooks)


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model.safetensors")


class Before:
    """The trainer's optimizer and schedule before the optim group (commit 275c179): one torch AdamW, matrices but
    embedding tables decayed, and one lr for every group, train.lr on the warmup + cosine schedule."""

    @staticmethod
    def make_optimizer(model: nn.Module, spec, device: str) -> torch.optim.AdamW:
        tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        params = list(model.parameters())
        decay = [p for p in params if p.dim() >= 2 and id(p) not in tables]
        rest = [p for p in params if not (p.dim() >= 2 and id(p) not in tables)]
        return torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                                  {"params": rest, "weight_decay": 0.0}], lr=spec.lr, betas=tuple(spec.betas),
                                 fused=device.startswith("cuda"))

    @staticmethod
    def lr_at(step: int, total_steps: int, spec) -> float:
        warmup = int(spec.warmup_fraction * total_steps)
        if step < warmup:
            return spec.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - 1 - warmup)
        floor = spec.lr * spec.min_lr_ratio
        return floor + 0.5 * (spec.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))

    @staticmethod
    def set_lr(optimizer, lr: float) -> float:
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


def test_the_default_trains_bit_for_bit_as_before_the_group(tmp_path, monkeypatch):
    now = train(tmp_path / "now", "model.tie_embeddings=false", "model.bias=true")
    for name in ("make_optimizer", "lr_at", "set_lr"):
        monkeypatch.setattr(loop, name, getattr(Before, name))
    then = train(tmp_path / "then", "model.tie_embeddings=false", "model.bias=true")
    assert now["optim"] == "adamw" and now["config_hash"] == then["config_hash"]
    assert (now["final/train_loss"], now["final/val_loss"]) == (then["final/train_loss"], then["final/val_loss"])
    reference = weights(tmp_path / "then")
    assert all(torch.equal(value, reference[key]) for key, value in weights(tmp_path / "now").items())


def test_a_muon_run_with_a_nan_loss_ends_diverged_at_that_step(tmp_path):
    summary = train(tmp_path / "run", "optim=muon", *FIXTURE_OVERRIDES, "ffn=faulty", "ffn.nan_at_step=7")
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 7


def test_a_bad_knob_is_refused_before_the_run_dir_exists(tmp_path):
    with pytest.raises(ablate.spec.SpecError, match="optim.momentum=1.5 must be in"):
        train(tmp_path / "run", "optim=muon", "optim.momentum=1.5")
    assert not (tmp_path / "run").exists()


def test_a_tiny_optim_study_through_ablate_run_is_compared_by_optimizer(tmp_path):
    cmd = [sys.executable, "-m", "ablate.run", "-m", "+study=optim", "seed=0,1", *TINY,
           f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")]
    assert sorted((s["optim"], s["seed"], s["status"]) for s in summaries) == [
        ("adamw", 0, "completed"), ("adamw", 1, "completed"), ("muon", 0, "completed"), ("muon", 1, "completed")]
    assert all(s["study"] == "optim" and s["varies"] == "optim" and s["baseline"] == "adamw" for s in summaries)
    [section] = group_runs(load_runs([str(tmp_path)]))
    assert section.title == "optim" and section.factors == ["optim"] and section.baseline == "adamw"
    assert {label: len(runs) for label, runs in section.variants.items()} == {"adamw": 2, "muon": 2}


def test_runs_recorded_before_the_group_are_adamw_runs_to_compare(tmp_path):
    """No study info: the varied factor is found from the configs. A run from before the optim group (no `optim`
    in its config or summary) is the same computation as an optim=adamw run of today."""
    for seed in (0, 1):
        write_run(tmp_path / f"old_{seed}", 4.0 + 0.01 * seed, seed=seed)
        write_run(tmp_path / f"new_{seed}", 4.0 + 0.01 * seed, seed=seed + 2, optim="adamw")
        write_run(tmp_path / f"muon_{seed}", 3.9 + 0.01 * seed, seed=seed, optim="muon")
    [section] = group_runs(load_runs([str(tmp_path)]))
    assert section.factors == ["optim"]
    assert {label: len(runs) for label, runs in section.variants.items()} == {"adamw": 4, "muon": 2}
