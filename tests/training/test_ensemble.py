"""train.ensemble_seeds: seeds trained in one process as one stacked model, each member an ordinary run of its seed.

The reference is the separate run of each seed (the trainer's own single-run path): with dropout off, a member's
losses equal it within float tolerance, its records carry the same keys, overrides and config hash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import ablate
from ablate.compare.load import load_runs
from ablate.config import validate
from ablate.model import TransformerLM
from ablate.spec import SpecError
from ablate.sweep.manifest import read_manifest
from ablate.training import train
from ablate.training.stacked import stack_members
from tests.fixtures.variants import REPO_ROOT

OFF = ["dropout=off", "train.checkpoint_every=10"]


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _losses(run_dir):
    """Every logged train and val loss, in order."""
    return [r.get("train/loss", r.get("val/loss")) for r in _rows(run_dir)]


def _train(tmp_path, overrides, name, hooks=()):
    cfg = ablate.compose([*overrides, f"out_dir={tmp_path / name}"])
    return train(cfg, overrides, hooks=hooks), tmp_path / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An ensemble job of seeds 0 and 1 and the separate runs of those seeds, at the default components (learned
    positions, LayerNorm, MHA, ReLU: the stacked path), with T5 relative positions (no stacked form: the loop) and
    with Muon (matrix-wise updates: the loop)."""
    from tests.conftest import TINY

    tmp = tmp_path_factory.mktemp("ensemble")
    made = {}
    for variant, extra in (("stacked", []), ("loop", ["pos_enc=relative"]), ("muon", ["optim=muon"])):
        overrides = [*TINY, *OFF, *extra]
        made[variant] = {"job": _train(tmp, [*overrides, "train.ensemble_seeds=[0,1]"], f"{variant}-job"),
                         "separate": [_train(tmp, [*overrides, f"seed={s}"], f"{variant}-seed{s}")[1] for s in (0, 1)],
                         "overrides": overrides}
    return made


@pytest.mark.parametrize("variant", ["stacked", "loop", "muon"])
def test_members_equal_separate_runs(runs, variant):
    result, job_dir = runs[variant]["job"]
    assert result["status"] == "completed" and len(result["members"]) == 2
    for seed, alone_dir in zip((0, 1), runs[variant]["separate"]):
        member_dir = job_dir / f"seed={seed}"
        member, alone = (json.loads((d / "summary.json").read_text()) for d in (member_dir, alone_dir))
        assert set(member) == set(alone)  # compare cannot tell them apart
        for key in ("config_hash", "overrides", "seed", "params/total", "flops_per_token", "steps", "tokens"):
            assert member[key] == alone[key], key
        got, expected = _losses(member_dir), _losses(alone_dir)
        assert [r["step"] for r in _rows(member_dir)] == [r["step"] for r in _rows(alone_dir)]
        assert got == pytest.approx(expected, abs=2e-5)
        assert member["final/val_loss"] == pytest.approx(alone["final/val_loss"], abs=2e-5)
        assert (member_dir / "model.safetensors").exists() and (member_dir / "sample.txt").exists()
    assert _losses(job_dir / "seed=0") != _losses(job_dir / "seed=1")


def test_stacked_path_covers_the_default_components_and_refuses_per_batch_parameters():
    def members(overrides):
        mspec, _ = validate(ablate.compose(["model=tiny", *overrides]))
        built = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            built.append(TransformerLM(mspec))
        return built

    for overrides in ([], ["norm=rmsnorm", "ffn=swiglu", "attention=gqa", "pos_enc=rope", "attention.qk_norm=true"],
                      ["norm=dyt", "model.bias=true", "pos_enc=alibi"]):
        model, _, why = stack_members(members(overrides))
        assert model is not None, (overrides, why)
    assert "pos_enc.tables.0.weight" in stack_members(members(["pos_enc=relative"]))[2]
    assert "lambda" in stack_members(members(["attention=diff"]))[2]


def test_ensemble_resumes_exactly(tmp_path, runs):
    overrides = [*runs["stacked"]["overrides"], "train.ensemble_seeds=[0,1]"]

    def fail_at_15(state):
        if state.step == 15:
            raise RuntimeError("killed at step 15")

    with pytest.raises(RuntimeError, match="killed"):
        _train(tmp_path, overrides, "job", hooks=[fail_at_15])
    for seed in (0, 1):
        assert json.loads((tmp_path / "job" / f"seed={seed}" / "summary.json").read_text())["status"] == "failed"
    result, job_dir = _train(tmp_path, overrides, "job")
    assert result["status"] == "completed"
    uninterrupted = runs["stacked"]["job"][1]
    for seed in (0, 1):
        assert _losses(job_dir / f"seed={seed}") == pytest.approx(_losses(uninterrupted / f"seed={seed}"), abs=1e-6)


def test_finished_member_is_skipped(tmp_path, runs):
    overrides = runs["stacked"]["overrides"]
    _, job_dir = _train(tmp_path, [*overrides, "train.ensemble_seeds=[0]"], "job")
    first = (job_dir / "seed=0" / "metrics.jsonl").read_text()
    result, _ = _train(tmp_path, [*overrides, "train.ensemble_seeds=[0,1]"], "job")
    assert (job_dir / "seed=0" / "metrics.jsonl").read_text() == first  # not trained again
    assert [m["status"] for m in result["members"]] == ["completed", "completed"]
    assert _losses(job_dir / "seed=1") == pytest.approx(_losses(runs["stacked"]["separate"][1]), abs=2e-5)


@pytest.mark.parametrize("value, problem", [
    ("[]", "train.ensemble_seeds=[] trains no seed"),
    ("[0,1,0]", "train.ensemble_seeds=[0, 1, 0] repeats seed 0"),
])
def test_bad_ensemble_seeds_are_refused(tmp_path, value, problem):
    with pytest.raises(SpecError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        _train(tmp_path, ["model=tiny", "logger=none", f"train.ensemble_seeds={value}"], "bad")
    assert not (tmp_path / "bad").exists()


def test_seed_beside_ensemble_and_several_processes_are_refused(tmp_path, monkeypatch):
    with pytest.raises(SpecError, match=r"names the seeds itself: drop seed=3"):
        _train(tmp_path, ["model=tiny", "logger=none", "seed=3", "train.ensemble_seeds=[0,1]"], "bad")
    from ablate.training import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(SpecError, match=r"cannot run in 2 processes"):
        validate(ablate.compose(["model=tiny", "train.ensemble_seeds=[0,1]"]), runs_here=True)


def test_study_sweep_of_ensembles_compares_as_three_seeds_per_variant(tmp_path):
    cmd = [sys.executable, "-m", "ablate.run", "-m", "+study=ffn", "ffn=relu,swiglu", "train.ensemble_seeds=[0,1,2]",
           "model=tiny", "train=smoke", "logger=none", "device=cpu", "data.max_bytes=3000000",
           f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "COLUMNS": "160", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert sorted((r["ffn"], r["seed"]) for r in rows) == [(f, s) for f in ("relu", "swiglu") for s in (0, 1, 2)]
    manifest = read_manifest(tmp_path)
    assert manifest.seeds == [0, 1, 2] and len(manifest.jobs) == 2 and len(manifest.members) == 6
    runs = load_runs([str(tmp_path)])
    assert sorted((r.summary["ffn"], r.seed) for r in runs) == sorted((r["ffn"], r["seed"]) for r in rows)
    assert {r.summary["config_hash"] for r in runs}.__len__() == 6

    # the separate run of one member's seed, in the same sweep dir, finds it finished and skips it
    again = [sys.executable, "-m", "ablate.run", "-m", "+study=ffn", "ffn=relu", "seed=1", *cmd[7:]]
    rerun = subprocess.run(again, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert rerun.returncode == 0 and "already completed" in rerun.stdout + rerun.stderr
