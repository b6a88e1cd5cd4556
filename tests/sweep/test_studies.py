"""Studies compose and expand to the expected jobs; a tiny study runs for real; rerunning it skips every job."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import ablate
from ablate.components import option_names
from ablate.sweep.plan import plan
from ablate.sweep.sweeper import load_study

# The options of the studies this project grew from (DESIGN.md); each study must run at least these.
DESIGN_OPTIONS = {
    "pos_enc": ["learned", "none", "sinusoidal", "relative", "rope", "alibi"],
    "attention": ["mha", "mqa", "gqa", "local", "linear", "bigbird", "mla"],
    "ffn": ["relu", "gelu", "swiglu", "silu", "geglu"],
    "norm": ["layernorm", "rmsnorm"],
    "placement": ["pre", "post"],
    "dropout": ["on", "off"],
}
# Every option found in conf/<family>/, minus what the study itself excludes: nothing here lists options.
STUDY_OPTIONS = {family: [o for o in option_names(family) if o not in (load_study(family).study.get("exclude") or [])]
                 for family in DESIGN_OPTIONS}
PHASES = [  # DESIGN.md: each phase adds one winner
    dict(pos_enc="learned", attention="mha", ffn="relu", placement="pre", norm="layernorm", dropout="on"),
    dict(pos_enc="learned", attention="mla", ffn="relu", placement="pre", norm="layernorm", dropout="on"),
    dict(pos_enc="rope", attention="mla", ffn="relu", placement="pre", norm="layernorm", dropout="on"),
    dict(pos_enc="rope", attention="mla", ffn="relu", placement="post", norm="layernorm", dropout="on"),
    dict(pos_enc="rope", attention="mla", ffn="swiglu", placement="post", norm="layernorm", dropout="on"),
    dict(pos_enc="rope", attention="mla", ffn="swiglu", placement="post", norm="layernorm", dropout="off"),
]
ENV = {**os.environ, "WANDB_MODE": "offline", "COLUMNS": "160"}
TINY = ["model=tiny", "train=smoke", "data.max_bytes=3000000", "device=cpu", "logger=none"]


@pytest.mark.parametrize("study", sorted(STUDY_OPTIONS))
def test_study_expands_to_its_options_times_seeds(study):
    jobs = plan([f"+study={study}", "seed=0,1,2"])
    assert len(jobs) == len(STUDY_OPTIONS[study]) * 3
    assert sorted({o for job in jobs for o in job if o.startswith(f"{study}=")}) == sorted(
        f"{study}={option}" for option in STUDY_OPTIONS[study])
    assert set(DESIGN_OPTIONS[study]) <= set(STUDY_OPTIONS[study])
    assert jobs[0][0] == f"{study}={load_study(study).study.baseline}", "the baseline runs first"
    cfg = ablate.compose([f"+study={study}", jobs[-1][0]])
    assert cfg.study.name == study and cfg.study.varies == study


@pytest.mark.parametrize("phase", range(6))
def test_phases_are_the_design_ladder(phase):
    cfg = ablate.compose(["+study=phases", f"+phase=p{phase}"])
    assert {family: cfg[family].name for family in PHASES[phase]} == PHASES[phase]
    assert cfg.study.phase == phase and cfg.study.name == "phases"


def test_study_all_is_the_union_of_studies_and_phases():
    jobs = plan(["+study=all", "seed=0,1"])
    assert len(jobs) == 2 * (sum(len(v) for v in STUDY_OPTIONS.values()) + len(PHASES))
    assert ["attention=mla", "study.name=attention", "study.varies=attention", "study.baseline=mha", "+study=all",
            "seed=1"] in jobs
    cfg = ablate.compose(["+study=all", "attention=mla", "study.name=attention", "study.varies=attention"])
    assert cfg.attention.name == "mla" and cfg.study.varies == "attention"


def test_tiny_study_runs_then_rerun_skips_everything(tmp_path):
    cmd = [sys.executable, "-m", "ablate.run", "-m", "+study=ffn", "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path}"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.loads((tmp_path / "sweep.json").read_text())
    n_jobs = 2 * len(STUDY_OPTIONS["ffn"])  # every ffn option (ffn=moe since issue 13), two seeds
    assert len(rows) == n_jobs and all(r["status"] == "completed" for r in rows)
    assert {(r["ffn"], r["seed"]) for r in rows} == {(o, s) for o in STUDY_OPTIONS["ffn"] for s in (0, 1)}
    assert all(r["study"] == "ffn" and r["varies"] == "ffn" and r["baseline"] == "relu" for r in rows)
    assert "seed" in first.stdout and f"{n_jobs} jobs" in first.stdout

    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/metrics.jsonl")}
    second = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert second.returncode == 0
    assert (second.stdout + second.stderr).count("already completed") == n_jobs
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/metrics.jsonl")}


def test_nan_and_exception_jobs_are_recorded_while_others_complete(tmp_path):
    from tests.fixtures.variants import FIXTURE_OVERRIDES, REPO_ROOT  # faults come from a test-only FFN

    cmd = [sys.executable, "-m", "ablate.run", "-m", "ffn=faulty", "ffn.nan_at_step=null,5", "ffn.raise_at_step=null,3",
           *FIXTURE_OVERRIDES, *TINY, f"hydra.sweep.dir={tmp_path}"]
    env = {**ENV, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 1  # some job failed: reported at the end, after every job ran
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["status"] for r in rows] == ["completed", "failed", "diverged", "failed"]
    assert rows[2]["diverged_at_step"] == 5
    for row in rows:
        assert (os.path.exists(os.path.join(row["run_dir"], "error.txt"))) == (row["status"] == "failed")


def test_fail_fast_stops_at_the_first_failure(tmp_path):
    from tests.fixtures.variants import FIXTURE_OVERRIDES, REPO_ROOT  # faults come from a test-only FFN

    cmd = [sys.executable, "-m", "ablate.run", "-m", "ffn=faulty", "ffn.raise_at_step=2,null", "sweep.fail_fast=true",
           *FIXTURE_OVERRIDES, *TINY, f"hydra.sweep.dir={tmp_path}"]
    env = {**ENV, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
    assert result.returncode != 0
    statuses = [json.loads(p.read_text())["status"] for p in tmp_path.glob("*/summary.json")]
    assert statuses == ["failed"]


def test_a_sweep_with_a_bad_job_starts_none(tmp_path):
    cmd = [sys.executable, "-m", "ablate.run", "-m", "attention=gqa,linear", "pos_enc=relative,rope", *TINY,
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "config error:" in line]
    assert len(lines) == 1 and "job 2 (attention=linear pos_enc=relative" in lines[0]
    assert "pos_enc=relative cannot be used with attention=linear" in lines[0]
    assert not (tmp_path / "sweep").exists()  # no job dir, no manifest: nothing started


def test_study_all_launches_through_the_sweeper_plugin(tmp_path):
    """+study=all runs for real (Hydra instantiates sweepers only from hydra_plugins); the studies' shared baseline
    job (layernorm + dropout on) runs once and is skipped the second time."""
    cmd = [sys.executable, "-m", "ablate.run", "-m", "+study=all", "study.include=[norm,dropout]", *TINY,
           f"hydra.sweep.dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert sorted((r["norm"], r["dropout"]) for r in rows) == sorted(
        [("layernorm", "off")] + [(norm, "on") for norm in STUDY_OPTIONS["norm"]])
    assert (result.stdout + result.stderr).count("already completed") == 1
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["name"] for s in manifest["studies"]] == ["norm", "dropout"]
    baseline_first = ["layernorm", *(o for o in STUDY_OPTIONS["norm"] if o != "layernorm")]
    assert manifest["studies"][0]["options"] == {"norm": baseline_first}
