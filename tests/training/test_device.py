"""A device this torch cannot use is refused in one line before a run starts, on the machine that runs it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

import ablate
from ablate.config import validate
from ablate.spec import SpecError
from ablate.sweep.plan import main as plan_main
from ablate.training.device import device_problem

CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available() or torch.version.cuda is not None,
                              reason="needs a torch built without CUDA")
NO_CUDA = (f"device=cuda: this torch build has no CUDA (torch {torch.__version__}); use device=cpu or install a "
           f"CUDA build of torch")


@CPU_ONLY
def test_cuda_on_a_cpu_build_is_refused_in_one_line():
    with pytest.raises(SpecError) as refused:
        validate(ablate.compose(["model=tiny", "device=cuda"]), runs_here=True)
    assert refused.value.problems == [NO_CUDA]


def test_a_run_loaded_for_analysis_keeps_its_device_whatever_this_machine_has():
    validate(ablate.compose(["model=tiny", "device=cuda:3"]))  # e.g. load_model on a laptop of a GPU run


def test_cuda_built_torch_without_a_gpu_and_a_missing_gpu_index(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_problem("cuda") == (f"device=cuda: torch {torch.__version__} was built for CUDA 12.6 but sees no "
                                      f"GPU (check the driver and CUDA_VISIBLE_DEVICES); use device=cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_problem("cuda") is None and device_problem("cuda:1") is None
    assert device_problem("cuda:2") == "device=cuda:2: this machine has 2 CUDA device(s); use cuda:0 to cuda:1"


def test_mps_where_there_is_none(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert device_problem("mps") == (f"device=mps: MPS (Apple GPU) is not available to torch {torch.__version__} on "
                                     f"this machine; use device=cpu")
    assert device_problem("cpu") is None and device_problem("auto") is None


@CPU_ONLY
def test_a_run_on_cuda_stops_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "ablate.run", "device=cuda", "model=tiny", "train=smoke",
                             "logger=none", f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"config error: {NO_CUDA}\n" in output and "Traceback" not in output
    assert not run_dir.exists()


@CPU_ONLY
def test_a_local_sweep_checks_the_device_and_a_remote_launcher_leaves_it_to_the_job(capsys):
    with pytest.raises(SystemExit):
        plan_main(["device=cuda", "model=tiny", "seed=0,1"])
    assert capsys.readouterr().err.count(NO_CUDA) == 2
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        pytest.skip("the slurm extra (hydra-submitit-launcher) is not installed")
    plan_main(["device=cuda", "model=tiny", "seed=0,1", "hydra/launcher=slurm"])  # runs on the cluster's GPUs
    assert capsys.readouterr().err == ""
