"""Records under real conditions: one writer per run dir, skip/resume by config hash across a sweep's job dirs,
a corrupt summary.json rewritten, bad data refused before anything exists."""

from __future__ import annotations

import json

import pytest

import ablate
from ablate.spec import SpecError
from ablate.sweep.manifest import Manifest, write_manifest
from ablate.track.files import RunDirBusy, RunFiles


def _train(run_dir, overrides):
    return ablate.train(ablate.compose([*overrides, f"out_dir={run_dir}"]), overrides)


def test_a_second_writer_is_refused_while_the_first_holds_the_run_dir(tmp_path, tiny_overrides):
    with RunFiles(tmp_path / "run").lock():  # the first writer
        with pytest.raises(RunDirBusy, match=f"pid {__import__('os').getpid()}"):
            _train(tmp_path / "run", tiny_overrides)
    assert not (tmp_path / "run" / "summary.json").exists()  # nothing of the second writer's mixed in
    assert _train(tmp_path / "run", tiny_overrides)["status"] == "completed"  # free again once released


def test_a_finished_job_is_found_by_its_config_hash_under_another_dir_name(tmp_path, tiny_overrides):
    """A sweep rerun with `seed=0,1` added names seed 0's job dir differently; it is still skipped."""
    write_manifest(tmp_path, Manifest())
    first = _train(tmp_path / "0_gqa", [*tiny_overrides, "attention=gqa"])
    again = _train(tmp_path / "0_gqa_seed0", [*tiny_overrides, "attention=gqa", "seed=0"])
    assert again == first
    assert not (tmp_path / "0_gqa_seed0" / "summary.json").exists()
    other = _train(tmp_path / "1_gqa_seed1", [*tiny_overrides, "attention=gqa", "seed=1"])
    assert other["config_hash"] != first["config_hash"] and other["run_dir"].endswith("seed1")


def test_outside_a_sweep_dir_no_other_dir_is_consulted(tmp_path, tiny_overrides):
    first = _train(tmp_path / "a", tiny_overrides)
    second = _train(tmp_path / "b", tiny_overrides)
    assert second["run_dir"] != first["run_dir"] and (tmp_path / "b" / "summary.json").exists()


def test_a_corrupt_summary_is_rewritten_not_a_crash(tmp_path, tiny_overrides):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text('{"status": "compl')
    summary = _train(tmp_path / "run", tiny_overrides)
    assert summary["status"] == "completed"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


def test_a_missing_data_path_is_refused_before_anything_exists(tmp_path, tiny_overrides):
    with pytest.raises(SpecError, match=r"data.path=/no/such/corpus names no file"):
        _train(tmp_path / "run", [*tiny_overrides, "data=text", "data.path=/no/such/corpus"])
    assert not (tmp_path / "run").exists()
