"""One run in two processes (torchrun, gloo on CPU, real subprocesses): the same training as one process at the same
global batch, rank 0 alone writes, a DDP run resumes exactly, a NaN in one process ends every process diverged, and
the batch must split evenly over processes and micro-batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import ablate
from ablate.config import validate
from ablate.spec import SpecError
from tests.fixtures.variants import FIXTURE_OVERRIDES, REPO_ROOT

TINY = ["model=tiny", "train=smoke", "data.max_bytes=3000000", "device=cpu", "dropout=off"]
WORKER = REPO_ROOT / "tests" / "training" / "ddp_worker.py"


def torchrun(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def worker(overrides: list[str], *flags: str) -> subprocess.CompletedProcess:
    return torchrun(str(WORKER), json.dumps(overrides), *flags)


def train_rows(run_dir) -> list[dict]:
    return [r for r in ablate.load_run(run_dir)[1] if "train/loss" in r]


def test_two_processes_train_as_one_and_only_rank_0_writes(tmp_path):
    """`torchrun ... -m ablate.run`: the final val loss within 1e-4 of the one-process run at the same global
    batch; the run dir holds what a one-process run's holds (one W&B run), and the other process wrote nothing:
    not in its working dir, not in the run dir."""
    cwd, run_dir = tmp_path / "cwd", tmp_path / "two"
    cwd.mkdir()
    result = torchrun("-m", "ablate.run", *TINY, "logger=wandb", f"hydra.run.dir={run_dir}", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    one = ablate.train(ablate.compose([*TINY, "logger=none", f"out_dir={tmp_path / 'one'}"]))
    two = json.loads((run_dir / "summary.json").read_text())

    assert two["status"] == "completed" and (two["world_size"], two["grad_accum"]) == (2, 1)
    assert one["world_size"] == 1 and two["tokens"] == one["tokens"] and two["config_hash"] == one["config_hash"]
    assert abs(two["final/val_loss"] - one["final/val_loss"]) < 1e-4
    for row_two, row_one in zip(train_rows(run_dir), train_rows(tmp_path / "one"), strict=True):
        assert row_two["step"] == row_one["step"] and abs(row_two["train/loss"] - row_one["train/loss"]) < 1e-4

    assert list(cwd.iterdir()) == []
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [*(p.name for p in (tmp_path / "one").iterdir()), ".hydra", "run.log", "wandb"])
    assert len(ablate.load_run(run_dir)[1]) == len(ablate.load_run(tmp_path / "one")[1])  # one writer of rows


def test_a_ddp_run_with_grad_accum_resumes_where_an_uninterrupted_one_ends(tmp_path):
    """Dropout on, two micro-batches per process: interrupted after step 12 (checkpoint at 10) and rerun, it ends
    bit for bit where the uninterrupted two-process run ends (every process's dropout stream is in the
    checkpoint, each process its own)."""
    base = [*TINY[:-1], "logger=none", "train.grad_accum=2", "train.checkpoint_every=5"]
    whole = worker([*base, f"out_dir={tmp_path / 'whole'}"])
    assert whole.returncode == 0, whole.stderr[-3000:]
    broken = worker([*base, f"out_dir={tmp_path / 'resumed'}"], "--raise-at", "12")
    assert broken.returncode != 0 and "interrupted after step 12" in broken.stderr
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["status"] == "failed"
    resumed = worker([*base, f"out_dir={tmp_path / 'resumed'}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    summaries = {name: json.loads((tmp_path / name / "summary.json").read_text()) for name in ("whole", "resumed")}
    assert summaries["resumed"]["status"] == "completed" and summaries["resumed"]["world_size"] == 2
    assert summaries["resumed"]["final/val_loss"] == summaries["whole"]["final/val_loss"]
    assert train_rows(tmp_path / "resumed") == [
        {**r, "time_s": a["time_s"], "perf/tokens_per_s": a["perf/tokens_per_s"]}
        for r, a in zip(train_rows(tmp_path / "whole"), train_rows(tmp_path / "resumed"), strict=True)]
    checkpoint = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    first, second = checkpoint["rng_by_rank"]
    assert torch.equal(first["torch"], checkpoint["rng"]["torch"]) and not torch.equal(first["torch"], second["torch"])


def test_a_nan_in_one_process_ends_every_process_diverged_at_that_step(tmp_path):
    result = worker([*TINY, "logger=none", *FIXTURE_OVERRIDES, "ffn=faulty", f"out_dir={tmp_path / 'run'}"],
                    "--nan-on-rank-1-at", "7")
    assert result.returncode == 0, result.stderr[-3000:]  # no hang, no error: both processes stopped at step 7
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 7


def test_the_batch_must_split_evenly_over_processes_and_micro_batches(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SpecError, match=r"^train.batch_size=8 must be divisible by world_size x train.grad_accum = "
                                        r"3 x 1 .*choose a batch_size that is a multiple of 3, or fewer processes$"):
        validate(ablate.compose([*TINY, "logger=none"]), runs_here=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    validate(ablate.compose([*TINY, "logger=none", "train.grad_accum=4"]), runs_here=True)  # 8 = 2 x 4
    with pytest.raises(SpecError, match="= 2 x 8"):
        validate(ablate.compose([*TINY, "logger=none", "train.grad_accum=8"]), runs_here=True)


def test_a_sweep_under_torchrun_is_refused_in_one_line():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WORLD_SIZE": "2", "RANK": "0"}
    result = subprocess.run([sys.executable, "-m", "ablate.run", "-m", "model=tiny"], capture_output=True,
                            text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("config error: -m under torchrun: torchrun trains one run in several processes, "
                                     "not a sweep; run a sweep's jobs with hydra/launcher=gpus (one GPU each) or "
                                     "hydra/launcher=slurm_ddp (several each)")


def test_a_job_of_two_submitit_tasks_is_one_run_in_two_processes(tmp_path):
    """The path of hydra/launcher=slurm_ddp, run locally: submitit starts the job's tasks, each runs the Hydra job;
    ranks come from the submitit job environment, the run is the one-process run."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "ablate.run", "-m", "hydra/launcher=submitit_local",
                             "hydra.launcher.tasks_per_node=2", *TINY, "logger=none", f"hydra.sweep.dir={tmp_path}"],
                            capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (summary_path,) = tmp_path.glob("*/summary.json")
    two = json.loads(summary_path.read_text())
    one = ablate.train(ablate.compose([*TINY, "logger=none", f"out_dir={tmp_path / 'one'}"]))
    assert two["status"] == "completed" and two["world_size"] == 2
    assert abs(two["final/val_loss"] - one["final/val_loss"]) < 1e-4


def test_the_slurm_ddp_preset_gives_each_job_one_task_per_gpu():
    result = subprocess.run([sys.executable, "-m", "ablate.run", "hydra/launcher=slurm_ddp",
                             "hydra.launcher.gpus_per_node=4", "--cfg", "hydra", "--resolve"],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SlurmLauncher" in result.stdout and "max_num_timeout: 5" in result.stdout  # slurm's, self-resuming
    assert "gpus_per_node: 4" in result.stdout and "tasks_per_node: 4" in result.stdout


@pytest.fixture
def process_group(monkeypatch, tmp_path):
    """A one-process gloo group in this process: enough for parallelize to wrap in DDP."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_is_told_of_parameters_no_gradient_reaches_and_the_probe_leaves_the_model_alone(process_group):
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    from ablate.config import train_spec
    from ablate.training.parallelize import parallelize

    cfg = ablate.compose([*TINY, *FIXTURE_OVERRIDES, "ffn=faulty"])
    model = ablate.build_model(cfg)
    wrapped = parallelize(model, train_spec(cfg), "cpu")
    assert isinstance(wrapped, DistributedDataParallel) and wrapped.module is model
    assert not wrapped.find_unused_parameters and model.blocks[0].ffn.training_forwards == 0
    assert all(p.grad is None for p in model.parameters())

    model.blocks[0].spare = nn.Linear(2, 2)  # in no forward
    rng = torch.get_rng_state()
    assert parallelize(model, train_spec(cfg), "cpu").find_unused_parameters
    assert torch.equal(torch.get_rng_state(), rng)
