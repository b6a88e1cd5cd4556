"""`ablate.sweep.plan` lists a sweep's jobs and refuses, as the sweeper does, the jobs a sweep would refuse."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ablate.components import option_names
from ablate.sweep.plan import main

TYPO = "attention=gqaa is not an option; choose one of " + ", ".join(option_names("attention"))


def run_plan(capsys, *arguments: str) -> tuple[int, str, str]:
    try:
        main(list(arguments))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_typo_in_a_swept_option_is_refused_in_one_line_naming_the_options(capsys):
    code, out, err = run_plan(capsys, "attention=gqaa,mla")
    assert code == 2
    assert out.splitlines() == ["  0! attention=gqaa", "  1  attention=mla", "2 jobs"]
    assert err.splitlines() == [f"config error: job 0 (attention=gqaa): {TYPO}",
                                "1 of 2 jobs have config errors: the sweep would start none"]


def test_a_typo_in_a_fixed_option_is_refused_in_one_line(capsys):
    code, out, err = run_plan(capsys, "attention=gqaa", "seed=0,1")
    assert (code, out, err) == (2, "", f"config error: {TYPO}\n")


def test_a_study_that_does_not_exist_is_refused_in_one_line(capsys):
    code, out, err = run_plan(capsys, "+study=all", "study.include=[norm,nrom]")
    assert (code, out) == (2, "")
    assert err.startswith("config error: study.include: no study named nrom; choose from ") and err.count("\n") == 1


def test_every_job_is_validated_as_the_sweeper_does(capsys):
    code, out, err = run_plan(capsys, "model=tiny", "model.n_heads=3,4")
    assert code == 2
    assert out.splitlines()[:2] == ["  0! model=tiny model.n_heads=3", "  1  model=tiny model.n_heads=4"]
    assert "config error: job 0 (model=tiny model.n_heads=3): model.d_model=" in err
    assert "must be divisible by model.n_heads=3" in err and "job 1" not in err


@pytest.mark.parametrize("flag", ["-m", "--multirun"])
def test_a_sweep_command_line_with_its_multirun_flag_is_listed(capsys, flag):
    code, out, err = run_plan(capsys, flag, "attention=gqa,mla", "seed=0,1")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["  0  attention=gqa seed=0", "  1  attention=gqa seed=1", "  2  attention=mla seed=0",
                                "  3  attention=mla seed=1", "4 jobs"]


def test_help_prints_usage_and_exits_0(capsys):
    code, out, err = run_plan(capsys, "--help")
    assert code == 0 and err == ""
    assert out.startswith("usage: python -m ablate.sweep.plan") and "ablate.run -m" in out


def test_a_sweep_refuses_a_typo_in_the_same_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ablate.run", "-m", "attention=gqaa,mla", "logger=none",
                             f"hydra.sweep.dir={tmp_path / 'sweep'}"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert f"config error: job 0 (attention=gqaa logger=none): {TYPO}\n" in result.stdout + result.stderr
    assert not (tmp_path / "sweep").exists()
