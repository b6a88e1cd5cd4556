"""The optimizer group: `optim=adamw` (the default, unchanged) and `optim=muon` (torch.optim.Muon on the hidden 2-D
matrices, AdamW on the rest), checked against a hand-written float64 Muon step, with its own peak lr on the shared
schedule, exact resume, validation and the optim study."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import ablate
from ablate.config import train_spec, validate
from ablate.spec import SpecError
from ablate.sweep.plan import plan
from ablate.track import config_hash
from ablate.training import train
from ablate.training.optim import Optimizers, lr_at, make_optimizer, muon_matrices, set_lr

TINY = ["model=tiny", "train=smoke", "logger=none", "data.max_bytes=3000000", "device=cpu", "dropout=off"]


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Muon's orthogonalization written out (Jordan et al., 2024): X = G/‖G‖_F (the wide orientation), then `steps`
    quintic iterations X ← aX + (bA + cA²)X with A = XXᵀ and (a, b, c) = (3.4445, -4.7750, 2.0315)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    model = ablate.build_model(ablate.compose(["model=tiny", "model.bias=true", "pos_enc=relative"]))
    names = {id(p): name for name, p in model.named_parameters()}
    muon = {names[id(p)] for p in muon_matrices(model)}
    expected = {name for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() == 2}
    assert muon == expected and muon  # every block's projection matrices, nothing else
    assert not any("embedding" in n or "norm" in n or n.endswith(".bias") or "pos" in n for n in muon)

    optimizer = make_optimizer(model, train_spec(ablate.compose(["model=tiny", "optim=muon"])), "cpu")
    assert isinstance(optimizer, Optimizers)
    by_part = {name: {id(p) for g in part.param_groups for p in g["params"]} for name, part in optimizer.parts.items()}
    assert by_part["muon"] == {id(p) for p in muon_matrices(model)}
    assert by_part["adamw"] | by_part["muon"] == {id(p) for p in model.parameters()}
    assert not by_part["adamw"] & by_part["muon"]


@pytest.mark.parametrize("rule,scale", [("match_rms_adamw", lambda rows, cols: 0.2 * math.sqrt(max(rows, cols))),
                                        ("original", lambda rows, cols: math.sqrt(max(1.0, rows / cols)))])
def test_one_muon_step_is_the_written_out_update(rule, scale):
    """W ← W(1 - lr·λ) - lr·scale·NS5(g + μ·g) on the first step (nesterov: the buffer is g), against float64 math
    (torch runs the iteration in bfloat16: agreement to bfloat16's precision)."""
    torch.manual_seed(0)
    model = nn.Module()
    model.blocks = nn.ModuleList([nn.Linear(48, 32, bias=False)])  # a (32, 48) weight
    cfg = ablate.compose(["optim=muon", f"optim.adjust_lr={rule}", "optim.lr=0.05", "train.lr=0.01",
                          "train.weight_decay=0.1"])
    optimizer = make_optimizer(model, train_spec(cfg), "cpu")
    before = model.blocks[0].weight.detach().double().clone()
    grad = torch.randn(32, 48)
    model.blocks[0].weight.grad = grad.clone()
    set_lr(optimizer, 0.01)  # the schedule's value of train.lr; Muon's part at its own peak, 0.05
    optimizer.step()
    expected = before * (1 - 0.05 * 0.1) - 0.05 * scale(32, 48) * newton_schulz(grad * (1 + 0.95))
    update = model.blocks[0].weight.detach().double() - before
    torch.testing.assert_close(update, expected - before, atol=0.03 * (expected - before).abs().max().item(), rtol=0)


def test_each_part_follows_the_shared_schedule_at_its_own_peak():
    cfg = ablate.compose(["model=tiny", "optim=muon", "optim.lr=0.02"])
    spec = train_spec(cfg)
    optimizer = make_optimizer(ablate.build_model(cfg), spec, "cpu")
    for step in (0, 5, 100, 199):
        lr = set_lr(optimizer, lr_at(step, 200, spec))
        assert all(math.isclose(g["lr"], lr) for g in optimizer.parts["adamw"].param_groups)
        assert all(math.isclose(g["lr"], lr * 0.02 / spec.lr) for g in optimizer.parts["muon"].param_groups)


def test_the_default_is_adamw_and_keeps_every_recorded_hash():
    cfg = ablate.compose(TINY)
    assert cfg.optim.name == "adamw" and isinstance(make_optimizer(ablate.build_model(cfg), train_spec(cfg), "cpu"),
                                                    torch.optim.AdamW)
    recorded = ablate.compose(TINY)
    with __import__("omegaconf").open_dict(recorded):
        del recorded["optim"]  # a config.yaml written before the group existed
    assert config_hash(cfg) == config_hash(recorded)
    assert config_hash(ablate.compose([*TINY, "optim=muon"])) != config_hash(cfg)


@pytest.mark.parametrize("override,line", [
    ("optim.ns_steps=0", "optim.ns_steps=0 must be >= 1"),
    ("optim.adjust_lr=rms", "optim.adjust_lr=rms must be one of match_rms_adamw, original"),
    ("optim.lr=-1", "optim.lr=-1.0 must be > 0"),
    ("optim.momentum=1.0", "optim.momentum=1.0 must be in [0, 1)"),
    ("+optim.beta=0.9", "optim.beta is not a key of optim"),
])
def test_bad_muon_knobs_are_named_in_one_line(override, line):
    with pytest.raises(SpecError) as failed:
        validate(ablate.compose([*TINY, "optim=muon", override]))
    assert [p for p in failed.value.problems if line in p]


def test_a_muon_run_resumes_exactly_and_records_its_optimizer(tmp_path):
    overrides = [*TINY, "optim=muon", "train.checkpoint_every=5"]
    whole = train(ablate.compose([*overrides, f"out_dir={tmp_path / 'whole'}"]))

    def stop_at_12(state):
        if state.step == 12:
            raise RuntimeError("stopped at step 12")

    with pytest.raises(RuntimeError, match="stopped at step 12"):
        train(ablate.compose([*overrides, f"out_dir={tmp_path / 'resumed'}"]), hooks=[stop_at_12])
    resumed = train(ablate.compose([*overrides, f"out_dir={tmp_path / 'resumed'}"]))
    assert whole["status"] == resumed["status"] == "completed" and whole["optim"] == "muon"
    assert resumed["final/val_loss"] == whole["final/val_loss"]
    weights = load_file(tmp_path / "whole" / "model.safetensors")  # and the same weights, bit for bit
    assert all(torch.equal(v, weights[k]) for k, v in load_file(tmp_path / "resumed" / "model.safetensors").items())
    checkpoint = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    assert set(checkpoint["optimizer"]) == {"adamw", "muon"}
    assert json.loads((tmp_path / "whole" / "summary.json").read_text())["optim"] == "muon"


def test_the_optim_study_runs_adamw_as_baseline_against_muon():
    jobs = plan(["+study=optim", "seed=0,1", "model=tiny"])
    assert sorted(" ".join(j) for j in jobs) == sorted(
        f"optim={o} +study=optim seed={s} model=tiny" for o in ("adamw", "muon") for s in (0, 1))
