"""Checkpoints: the train state round-trips exactly through a file that loads with weights_only=True, and a file
that is unsafe (pickled code), truncated or corrupt is refused in one line naming it — never run, never skipped."""

from __future__ import annotations

import json
import os
import pickle
import shlex

import numpy as np
import pytest
import torch

import ablate
from ablate.config import train_spec
from ablate.data.batches import RandomWindows, SequentialWindows
from ablate.training import train
from ablate.training.checkpoint import CheckpointError, read_checkpoint
from ablate.training.optim import make_optimizer
from ablate.training.state import TrainState

TINY = ["model=tiny", "train=smoke", "logger=none", "data.max_bytes=3000000", "device=cpu"]


def _state(sampler: type, seed: int) -> TrainState:
    cfg = ablate.compose(["model=tiny"])
    torch.manual_seed(seed)
    model = ablate.build_model(cfg)
    tokens = np.arange(5000, dtype=np.uint16) % 256
    return TrainState(model, make_optimizer(model, train_spec(cfg), "cpu"), sampler(tokens, 4, 64, seed))


def _one_step(state: TrainState) -> None:
    x, y = state.batches.next()
    loss = torch.nn.functional.cross_entropy(state.model(x).flatten(0, 1), y.flatten())
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    state.advance(x.numel(), 0.25)


@pytest.mark.parametrize("sampler", [RandomWindows, SequentialWindows])
def test_train_state_round_trips_through_a_weights_only_file(tmp_path, sampler):
    saved = _state(sampler, seed=0)
    for _ in range(3):
        _one_step(saved)
    path = tmp_path / "last.pt"
    torch.manual_seed(123)
    saved.save(path, config={"seed": 0, "train": {"betas": [0.9, 0.95]}}, summary={"config_hash": "abc"})
    on_disk = torch.load(path, weights_only=True)  # tensors and plain values only: numpy's RNG state is a dict
    assert on_disk["batches"] == saved.batches.state() and on_disk["summary"] == {"config_hash": "abc"}

    resumed = _state(sampler, seed=1)  # other weights, other RNG, other data position
    checkpoint = resumed.load(path)
    assert checkpoint["config"]["train"]["betas"] == [0.9, 0.95]
    assert (resumed.step, resumed.tokens, resumed.time_s) == (3, 3 * 4 * 64, 0.75)
    for a, b in zip(saved.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(saved.optimizer.state_dict()["state"][0]["exp_avg"],
                       resumed.optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.get_rng_state(), on_disk["rng"]["torch"])  # _state(seed=1) had reseeded it
    _one_step(resumed)
    torch.set_rng_state(on_disk["rng"]["torch"])  # one process holds both: the same dropout draws for each
    _one_step(saved)
    for a, b in zip(saved.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)  # the next batch and update are the same


class Payload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _craft(path, marker, writer: str) -> None:
    crafted = {"model": Payload(marker), "summary": {"config_hash": "x"}}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(crafted, protocol=2))
    else:
        torch.save(crafted, path)  # the zip layout of a real checkpoint, code in its data.pkl


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_checkpoint_with_pickled_code_is_refused_and_the_code_never_runs(tmp_path, writer):
    path, marker = tmp_path / "last.pt", tmp_path / "payload-ran"
    _craft(path, marker, writer)
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(path)
    message = str(refused.value)
    assert str(path) in message and "refused" in message and "\n" not in message
    assert not marker.exists()
    # the control: unpickled the unsafe way, the file does run its code
    pickle.loads(path.read_bytes()) if writer == "pickle" else torch.load(path, weights_only=False)
    assert marker.exists()


def test_the_trainer_refuses_a_crafted_checkpoint_and_records_why(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "payload-ran"
    (run_dir / "checkpoints").mkdir(parents=True)
    _craft(run_dir / "checkpoints" / "last.pt", marker, "torch.save")
    with pytest.raises(CheckpointError, match="last.pt: refused to load"):
        ablate.train(ablate.compose([*TINY, f"out_dir={run_dir}"]))
    assert not marker.exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and str(run_dir / "checkpoints" / "last.pt") in summary["error"]
    assert "CheckpointError" in (run_dir / "error.txt").read_text()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "not ours"])
def test_a_damaged_checkpoint_fails_in_one_line_naming_it(tmp_path, damage):
    path = tmp_path / "last.pt"
    _state(RandomWindows, seed=0).save(path, config={}, summary={})
    data = path.read_bytes()
    if damage == "not ours":
        torch.save({"weights": torch.ones(2)}, path)
    else:
        path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"not a checkpoint"}[damage])
    with pytest.raises(CheckpointError) as failed:
        read_checkpoint(path)
    message = str(failed.value)
    assert str(path) in message and "\n" not in message and "resume=false" in message


def test_a_truncated_checkpoint_fails_the_rerun_instead_of_starting_fresh(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [*TINY, "train.checkpoint_every=5", f"out_dir={run_dir}"]

    def stop_at_12(state):
        if state.step == 12:
            raise RuntimeError("stopped at step 12")

    with pytest.raises(RuntimeError, match="stopped at step 12"):
        train(ablate.compose(overrides), hooks=[stop_at_12])
    checkpoint = run_dir / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ablate.train(ablate.compose(overrides))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "last.pt: cannot be read" in summary["error"]
    assert max(json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()) == 10  # nothing redone
