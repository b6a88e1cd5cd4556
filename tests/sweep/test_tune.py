"""study.tune_lr: stage 1 tries each lr of the grid on the first seed, stage 2 runs every seed at each variant's
best; the choice follows the stage-1 records on disk, a rerun skips both stages, compare keeps stage 1 apart."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from ablate.compare.build import build_report
from ablate.sweep.plan import main as plan_main
from ablate.sweep.tune import best_lr, choose_lrs, tuning_dir, tuning_job, unchosen, variant_of
from tests.sweep.test_studies import ENV, TINY

GRID = "study.lr_grid=[1e-3,1e-2]"


def test_best_lr_is_the_lowest_finite_loss_and_the_smaller_lr_on_a_tie():
    assert best_lr({1e-3: 3.2, 3e-3: 3.1, 1e-2: 3.4}) == 3e-3
    assert best_lr({1e-3: 3.2, 1e-2: 3.2}) == 1e-3
    assert best_lr({1e-3: None, 1e-2: 3.9, 3e-2: math.inf}) == 1e-2  # unfinished left out, diverged never best
    assert best_lr({1e-3: None, 1e-2: math.inf}) is None


def test_the_choice_is_read_from_stage_one_records_and_a_variant_without_one_is_reported(tmp_path):
    job = ["ffn=relu", "model=tiny", "seed=0"]
    stage1 = {variant_of(job): {lr: tuning_job(job, lr, 4) for lr in (1e-3, 1e-2)}}
    runs = {lr: tuning_dir(tmp_path, j) for lr, j in stage1[variant_of(job)].items()}
    assert all(d.parent.name == "lr_tuning" for d in runs.values())
    assert "seed" not in " ".join(variant_of(job)) and "train.max_steps=4" in stage1[variant_of(job)][1e-3]
    for lr, summary in {1e-3: {"status": "completed", "final/val_loss": 3.0},
                        1e-2: {"status": "diverged", "final/val_loss": None}}.items():
        runs[lr].mkdir(parents=True)
        (runs[lr] / "summary.json").write_text(json.dumps(summary))
    assert choose_lrs(tmp_path, stage1) == {variant_of(job): 1e-3}

    (runs[1e-3] / "summary.json").write_text(json.dumps({"status": "failed"}))
    assert choose_lrs(tmp_path, stage1) == {variant_of(job): None}
    from ablate.sweep.tune import TuningPlan

    plan = TuningPlan(stage1=stage1, jobs=[job, ["ffn=relu", "model=tiny", "seed=1"]])
    assert plan.final_jobs(tmp_path) == []  # no seed runs at an lr nobody chose
    assert unchosen(tmp_path) == [f"ffn=relu model=tiny: no lr of study.lr_grid finished with a finite loss, so its "
                                  f"seeds were not run (stage-1 runs in {tmp_path / 'lr_tuning'})"]


@pytest.mark.parametrize("overrides, message", [
    (["study.lr_grid=[]"], "study.lr_grid: give the learning rates to try"),
    (["study.lr_grid=[1e-3,-1]"], "study.lr_grid: -1 is not a positive learning rate"),
    (["study.tune_steps=0"], "study.tune_steps=0: give a positive number of steps"),
    (["train.lr=1e-3"], "train.lr: study.tune_lr picks each variant's lr"),
])
def test_a_tuning_sweep_that_cannot_work_is_refused_in_one_line(overrides, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        plan_main(["+study=ffn", "study.tune_lr=true", "seed=0,1", *overrides])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("config error:")]
    assert len(errors) == 1 and message in errors[0]


def test_tune_lr_without_a_study_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        plan_main(["++study.tune_lr=true", "++study.lr_grid=[1e-3,3e-3]", "model=tiny"])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("config error:")]
    assert errors == ["config error: study.tune_lr: there is no study to tune; add one, e.g. +study=ffn "
                      "study.tune_lr=true"]


@pytest.mark.parametrize("override, message", [
    ("study.lr_grid=[]", "study.lr_grid: give the learning rates to try"),
    ("ffn=relu,reluu", "ffn=reluu is not an option; choose one of"),  # (was Hydra's page of search paths, exit 1)
])
def test_a_refused_tuning_sweep_writes_nothing(tmp_path, override, message):
    cmd = [sys.executable, "-m", "ablate.run", "-m", "+study=ffn", "study.tune_lr=true", override,
           *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 2
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "config error:" in line]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "sweep").exists()


def test_a_tuning_study_runs_each_seed_at_its_variants_best_lr_and_a_rerun_skips_both_stages(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "ablate.run", "-m", "+study=ffn", "ffn=relu,swiglu", "seed=0,1", "study.tune_lr=true",
           GRID, "study.tune_steps=6", *TINY, "train.max_steps=8", f"hydra.sweep.dir={sweep}"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]

    stage1 = [json.loads(p.read_text()) for p in (sweep / "lr_tuning").glob("*/summary.json")]
    assert len(stage1) == 4 and all(s["lr_tuning"] and s["seed"] == 0 and s["steps"] == 6 for s in stage1)
    lr_of = {}
    for ffn in ("relu", "swiglu"):
        losses = {float(s["overrides"].split("train.lr=")[1].split(",")[0]): s["final/val_loss"]
                  for s in stage1 if s["ffn"] == ffn}
        lr_of[ffn] = min(losses, key=losses.get)
    final = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert sorted((s["ffn"], s["seed"]) for s in final) == [("relu", 0), ("relu", 1), ("swiglu", 0), ("swiglu", 1)]
    for s in final:
        assert "lr_tuning" not in s and s["steps"] == 8
        config = (sweep / s["run_dir"].rsplit("/", 1)[1] / "config.yaml").read_text()
        assert f"lr: {lr_of[s['ffn']]}" in config
    choices = json.loads((sweep / "lr_tuning" / "choices.json").read_text())
    assert sorted(c["lr"] for c in choices) == sorted(lr_of.values())
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert len(manifest["jobs"]) == 8  # both stages, as launched
    assert len(json.loads((sweep / "sweep.json").read_text())) == 8

    stamps = {p: p.stat().st_mtime_ns for p in sweep.rglob("metrics.jsonl")}
    second = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert second.returncode == 0
    assert (second.stdout + second.stderr).count("already completed") == 8
    assert stamps == {p: p.stat().st_mtime_ns for p in sweep.rglob("metrics.jsonl")}

    report = build_report([str(sweep)], tmp_path / "report")
    assert len(report.runs) == 4  # stage 1 is not in the tables
    lrs = {row.label.split(" ")[0]: row.lr for row in report.tables[0]}
    assert lrs == {ffn: str(lr) for ffn, lr in lr_of.items()}
    summary_md = (tmp_path / "report" / "summary.md").read_text()
    assert "## lr sensitivity: ffn · model=tiny" in summary_md and "(and 4 lr-tuning runs" in summary_md
    assert (tmp_path / "report" / "lr_sensitivity_ffn_tiny.png").stat().st_size > 10_000
    assert 'id="lr-ffn_tiny"' in (tmp_path / "report" / "report.html").read_text()


def test_a_tuned_studys_variants_are_its_options_whatever_lr_each_chose(tmp_path):
    """Each option of a tune_lr study trains at its own lr: that lr is part of the variant (the `lr` column), not
    a second factor that would split the study into option × lr rows and break the transfer across scales."""
    import yaml

    from tests.compare.fake_runs import write_run

    for ffn, lr, final in (("relu", 0.003, 3.0), ("swiglu", 0.001, 2.9)):
        for seed in (0, 1):
            run = write_run(tmp_path / "sweep" / f"{ffn}-{seed}", final + 0.01 * seed, seed=seed, ffn=ffn,
                            summary_extra={"study": "ffn", "varies": "ffn", "baseline": "relu"})
            config = yaml.safe_load((run / "config.yaml").read_text())
            config["study"]["tune_lr"], config["train"]["lr"] = True, lr
            (run / "config.yaml").write_text(yaml.safe_dump(config))
    report = build_report([str(tmp_path / "sweep")], tmp_path / "report", html=False, png=False)
    assert {row.label: row.lr for row in report.tables[0]} == {"relu": "0.003", "swiglu": "0.001"}


def test_tune_lr_on_a_single_run_is_refused_not_ignored(tmp_path):
    cmd = [sys.executable, "-m", "ablate.run", "+study=ffn", "study.tune_lr=true", *TINY,
           f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 2
    assert "config error: study.tune_lr: tuning is a sweep" in result.stdout + result.stderr
    assert not (tmp_path / "run").exists()


def test_a_variants_identity_ignores_its_seed_data_order_and_lr_but_not_what_it_computes():
    from ablate import compose
    from ablate.sweep.tune import variant_hash

    def identity(*overrides):
        return variant_hash(OmegaConf.to_container(compose(["model=tiny", *overrides]), resolve=True))

    relu = identity("ffn=relu")
    assert identity("ffn=relu", "seed=3", "data.seed=5", "data.order=fixed", "train.lr=0.01") == relu
    assert identity("ffn=swiglu") != relu and identity("ffn=relu", "train.max_steps=7") != relu


def test_a_rerun_with_another_grid_and_budget_leaves_what_it_superseded_out_of_compare(tmp_path):
    """The edge-of-grid warning says to widen the grid: the rerun chooses another lr and runs every seed again,
    and the runs at the lr chosen before (and stage 1's runs at the old budget) stay on disk. compare takes the
    current choice from lr_tuning/choices.json: a variant's row never mixes lrs, the plot never mixes budgets."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "ablate.run", "-m", "+study=ffn", "ffn=relu,swiglu", "seed=0", "study.tune_lr=true",
           *TINY, "train.max_steps=8", f"hydra.sweep.dir={sweep}"]
    for grid, steps in (("[1e-5]", 6), ("[1e-5,1e-2]", 4)):
        result = subprocess.run([*cmd, f"study.lr_grid={grid}", f"study.tune_steps={steps}"], capture_output=True,
                                text=True, env=ENV, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    choices = json.loads((sweep / "lr_tuning" / "choices.json").read_text())
    assert [c["lr"] for c in choices] == [1e-2, 1e-2]  # 1e-5 barely moves in 4 steps: the choice changed
    assert len(list(sweep.glob("*/summary.json"))) == 4 and len(list(sweep.glob("lr_tuning/*/summary.json"))) == 6

    report = build_report([str(sweep)], tmp_path / "report", png=False)
    assert sorted((r.summary["ffn"], r.config["train"]["lr"]) for r in report.runs) == [("relu", 0.01),
                                                                                         ("swiglu", 0.01)]
    assert {row.lr for row in report.tables[0]} == {"0.01"}
    assert report.notes == ["2 runs left out, trained at an lr their sweep's lr tuning no longer chooses (the grid "
                            "or budget changed; lr_tuning/choices.json has the current choice): 2 at lr 1e-05",
                            "2 lr-tuning runs left out of the lr sensitivity section: the current choice was not "
                            "made from them (lr_tuning/choices.json)"]
    summary_md = (tmp_path / "report" / "summary.md").read_text()
    assert "(and 4 lr-tuning runs" in summary_md
    section = summary_md.split("## lr sensitivity")[1]
    assert "| variant | lr 1e-05 | lr 0.01 | chosen lr |" in section
    for choice in choices:  # the current round's losses, not the old budget's
        assert all(f"{tried['final_val_loss']:.4f}" in section for tried in choice["tried"])


def test_plan_lists_stage_one_and_says_how_many_jobs_follow(capsys):
    plan_main(["+study=ffn", "ffn=relu,swiglu", "seed=0,1,2", "study.tune_lr=true", GRID, "model=tiny"])
    lines = capsys.readouterr().out.splitlines()
    assert sum("lr_tuning/" in line for line in lines) == 4  # 2 variants x 2 lrs, on the first seed
    assert lines[-2:] == ["4 jobs", "then 6 jobs, every seed of each variant at the lr these choose "
                                    "(study.tune_lr's stage 2)"]
