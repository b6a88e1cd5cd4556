"""train.keep_checkpoints: what a completed run keeps (all | final | none); checkpoints exist while it runs, so an
interrupted run resumes whatever the setting."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

import ablate
from ablate.training import train as train_run
from ablate.config import validate
from ablate.spec import SpecError
from ablate.track import config_hash
from tests.conftest import TINY

KEPT = {"all": {"checkpoints/last.pt", "model.safetensors"}, "final": {"model.safetensors"}, "none": set()}


def train(run_dir, *overrides, hooks=()):
    every = [*TINY, "train.checkpoint_every=5", *overrides]
    return train_run(ablate.compose([*every, f"out_dir={run_dir}"]), every, hooks=hooks)


def weights_files(run_dir) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in [*run_dir.glob("checkpoints/*"), *run_dir.glob("*.safetensors")]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("keep") / "all"
    assert train(run_dir)["status"] == "completed"
    return run_dir


def test_all_is_the_default_and_keeps_checkpoint_and_final_weights(uninterrupted):
    assert ablate.compose(TINY).train.keep_checkpoints == "all"
    assert weights_files(uninterrupted) == KEPT["all"]


@pytest.mark.parametrize("keep", ["final", "none"])
def test_a_completed_run_keeps_what_the_setting_says(tmp_path, uninterrupted, keep):
    run_dir = tmp_path / keep
    summary = train(run_dir, f"train.keep_checkpoints={keep}")
    assert summary["status"] == "completed"
    assert weights_files(run_dir) == KEPT[keep] and not (run_dir / "checkpoints").exists()
    assert {"summary.json", "metrics.jsonl", "sample.txt", "config.yaml"} <= {p.name for p in run_dir.iterdir()}
    if keep == "final":
        model = ablate.load_model(run_dir)  # what analysis and export read
        reference = load_file(uninterrupted / "model.safetensors")
        assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items() if key in reference)
    else:
        with pytest.raises(FileNotFoundError, match="train.keep_checkpoints"):
            ablate.load_model(run_dir)


def test_an_interrupted_run_resumes_under_final_then_keeps_only_the_final_weights(tmp_path, uninterrupted, caplog):
    run_dir = tmp_path / "run"

    def stop_at_12(state):
        if state.step == 12:
            raise RuntimeError("stopped at step 12")

    with pytest.raises(RuntimeError, match="stopped at step 12"):
        train(run_dir, "train.keep_checkpoints=final", hooks=[stop_at_12])
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 10, "kept while running"
    caplog.set_level(logging.INFO, logger="ablate")
    summary = train(run_dir, "train.keep_checkpoints=final")
    assert "resumed from the checkpoint at step 10" in caplog.text
    assert summary["status"] == "completed" and weights_files(run_dir) == KEPT["final"]
    assert summary["final/val_loss"] == json.loads((uninterrupted / "summary.json").read_text())["final/val_loss"]


def test_the_setting_is_recording_only():
    assert config_hash(ablate.compose([*TINY, "train.keep_checkpoints=none"])) == config_hash(ablate.compose(TINY))


def test_an_unknown_setting_is_refused_in_one_line():
    with pytest.raises(SpecError) as refused:
        validate(ablate.compose([*TINY, "train.keep_checkpoints=last"]))
    assert refused.value.problems == ["train.keep_checkpoints=last must be one of all, final, none (what a completed "
                                      "run keeps: checkpoints and final weights, final weights only, nothing)"]
