"""Existing Hydra launchers run ablate's jobs: joblib in parallel processes sharing one token cache,
submitit_local capped by the sweeper's batch size, and the SLURM preset composes (no SLURM here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

TINY = ["attention=mha,mqa", "model=tiny", "train=smoke", "data.max_bytes=3000000", "device=cpu", "logger=none"]


def _sweep(tmp_path, *args):
    env = {**os.environ, "WANDB_MODE": "offline", "ABLATE_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "ablate.run", "-m", *args, *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / "sweep" / "sweep.json").read_text())


def test_joblib_runs_jobs_in_parallel_processes_with_one_cache(tmp_path):
    rows = _sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    caches = [p for p in (tmp_path / "cache" / "tokens").iterdir() if p.is_dir()]
    assert len(caches) == 1, caches  # both jobs wanted the same cache; it was built once, no temp dir left
    assert json.loads((caches[0] / "meta.json").read_text())["tokens"]["train"] > 0


def test_submitit_local_with_a_cap_of_one_job_at_a_time(tmp_path):
    rows = _sweep(tmp_path, "hydra/launcher=submitit_local", "hydra.sweeper.max_batch_size=1")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    first, second = (os.path.join(r["run_dir"], name) for r, name in zip(rows, ("summary.json", "config.yaml")))
    assert os.path.getmtime(first) <= os.path.getmtime(second)  # the second job started after the first ended


def test_slurm_preset_composes():
    result = subprocess.run(
        [sys.executable, "-m", "ablate.run", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg",
         "hydra", "--package", "hydra.launcher"], capture_output=True, text=True, check=True)
    assert "SlurmLauncher" in result.stdout and "partition: gpu" in result.stdout
    assert "max_num_timeout: 5" in result.stdout and "gpus_per_node: 1" in result.stdout


def test_optuna_lr_search_minimizes_final_val_loss_and_continues_from_sqlite(tmp_path):
    import optuna
    import yaml

    storage = f"sqlite:///{tmp_path / 'lr.db'}"
    env = {**os.environ, "WANDB_MODE": "offline"}
    for n_trials, sweep in ((3, "a"), (2, "b")):
        cmd = [sys.executable, "-m", "ablate.run", "-m", "hydra/sweeper=lr_search",
               f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.storage={storage}",
               "hydra.sweeper.study_name=lr-mqa", "attention=mqa", *TINY[1:], f"hydra.sweep.dir={tmp_path / sweep}"]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    losses = [json.loads(p.read_text())["final/val_loss"] for p in tmp_path.glob("*/*/summary.json")]
    assert len(losses) == 5
    study = optuna.load_study(study_name="lr-mqa", storage=storage)
    assert len(study.trials) == 5  # the second command continued the stored study
    assert study.best_value == min(losses)
    best = yaml.safe_load((tmp_path / "b" / "optimization_results.yaml").read_text())
    assert best["best_value"] == min(losses) and 1e-4 <= best["best_params"]["train.lr"] <= 3e-2
