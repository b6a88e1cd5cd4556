"""Job dir names: Hydra's form when it is safe, else a cleaned prefix plus a hash — never a `/`, never `..`, never
longer than a filesystem allows; recording-only keys never change a job's dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ablate.naming import MAX_DIRNAME, job_dirname, run_name


@pytest.mark.parametrize("overrides", [["data.path=/abs/file.txt"], ["+zz=../../../victim"], ["x=" + "a" * 400],
                                       ["data.path='~/c/*.txt'"], ["a=b c"], [".hidden=1"]])
def test_unsafe_overrides_become_one_flat_bounded_name(overrides):
    name = job_dirname(overrides)
    assert "/" not in name and ".." not in name and not name.startswith(".") and len(name) <= MAX_DIRNAME
    assert name != job_dirname([overrides[0] + "x"])  # the hash keeps different overrides apart


def test_safe_overrides_keep_hydras_form_and_recording_keys_are_left_out():
    assert job_dirname(["seed=1", "attention=gqa", "+study=attention", "logger.mode=offline", "device=cpu"]) == \
        "attention=gqa,seed=1"
    assert run_name(["seed=1", "+attention.n_kv_heads=4", "hydra.searchpath=[x]"]) == "attention.n_kv_heads=4,seed=1"
    assert job_dirname([]) == ""


def test_a_sweep_over_absolute_paths_keeps_its_jobs_in_the_sweep_dir(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a", "b"):
        (corpus / f"{name}.txt").write_text("".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(800)))
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "ablate.run", "-m", "data=text", f"data.path={corpus / 'a.txt'},{corpus / 'b.txt'}",
           "model=tiny", "train=smoke", "logger=none", "device=cpu", f"hydra.sweep.dir={sweep}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"},
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((sweep / "sweep.json").read_text())
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert all(os.path.dirname(r["run_dir"]) == str(sweep) for r in rows)  # flat: one level under the sweep dir
