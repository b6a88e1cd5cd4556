"""One training step's parts: auxiliary losses in the gradient but not in train/loss, their logged means, and the
parallelize step (compile outside model code)."""

from __future__ import annotations

import pytest
import torch

import ablate
from ablate.config import train_spec
from ablate.model.flex import compiled_flex_attention
from ablate.training.optim import make_optimizer
from ablate.training.parallelize import parallelize
from ablate.training.state import TrainState
from ablate.training.step import DivergenceGuard, LossMeter, compute_losses, forward_backward
from tests.fixtures.variants import FIXTURE_OVERRIDES, PenalizedMLP

TINY = ["model=tiny", "train=smoke", "logger=none", "data.max_bytes=3000000", "device=cpu"]
PENALIZED = [*FIXTURE_OVERRIDES, "ffn=penalized", "ffn.penalty=0.5"]


def test_the_step_minimizes_cross_entropy_plus_aux_and_reports_cross_entropy():
    cfg = ablate.compose(["model=tiny", "dropout=off", *PENALIZED])
    model = ablate.build_model(cfg)
    assert isinstance(model.blocks[0].ffn, PenalizedMLP)
    state = TrainState(model, make_optimizer(model, train_spec(cfg), "cpu"), None)
    x, y = torch.randint(0, 256, (2, 2, 32)).unbind(0)

    losses = compute_losses(model, model, x, y, "cpu")
    penalties = [block.ffn.last_penalty for block in model.blocks]
    params = [p for p in model.parameters()]
    ce_grads = torch.autograd.grad(losses.ce, params, retain_graph=True, allow_unused=True)
    aux_grads = torch.autograd.grad(sum(penalties), params, retain_graph=True, allow_unused=True)
    values = {k: v.item() for k, v in forward_backward(model, state, x, y, "cpu", grad_accum=1, grad_clip=0.0).items()}

    assert set(losses.aux) == {"ffn"} and torch.equal(losses.aux["ffn"], penalties[0] + penalties[1])
    assert values == {"train/loss": losses.ce.item(), "train/aux/ffn": losses.aux["ffn"].item()}
    for p, ce, aux in zip(params, ce_grads, aux_grads):
        expected = ce if aux is None else ce + aux
        torch.testing.assert_close(p.grad, expected)
    up = next(i for i, p in enumerate(params) if p is model.blocks[0].ffn.up.weight)
    assert not torch.allclose(params[up].grad, ce_grads[up])  # the aux term is really in the gradient


def test_gradient_accumulation_gives_the_full_batch_gradient_and_mean_losses():
    cfg = ablate.compose(["model=tiny", "dropout=off", *PENALIZED])
    model = ablate.build_model(cfg).double()
    state = TrainState(model, make_optimizer(model, train_spec(cfg), "cpu"), None)
    x, y = torch.randint(0, 256, (2, 4, 32)).unbind(0)
    whole = forward_backward(model, state, x, y, "cpu", grad_accum=1, grad_clip=0.0)
    grads = [p.grad.clone() for p in model.parameters()]
    split = forward_backward(model, state, x, y, "cpu", grad_accum=4, grad_clip=0.0)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g, atol=1e-12, rtol=1e-10)
    assert split["train/loss"].item() == pytest.approx(whole["train/loss"].item(), abs=1e-6)  # float32 cross-entropy


def test_a_run_with_grad_accum_ends_where_the_plain_run_ends(tmp_path):
    """Same global batch, two micro-batches per step: the same training up to float summation order."""
    base = [*TINY, "dropout=off", "train.max_steps=10"]
    plain = ablate.train(ablate.compose([*base, f"out_dir={tmp_path / 'plain'}"]))
    accumulated = ablate.train(ablate.compose([*base, "train.grad_accum=2", f"out_dir={tmp_path / 'accum'}"]))
    assert accumulated["final/val_loss"] == pytest.approx(plain["final/val_loss"], abs=1e-4)
    assert accumulated["config_hash"] != plain["config_hash"]


def test_grad_accum_must_divide_the_batch():
    from ablate.config import validate
    from ablate.spec import SpecError

    with pytest.raises(SpecError, match="train.grad_accum=3 must be a positive divisor of train.batch_size=8"):
        validate(ablate.compose([*TINY, "train.grad_accum=3"]))


def test_a_run_logs_each_aux_loss_as_a_mean_beside_train_loss(tmp_path):
    run_dir = tmp_path / "run"
    summary = ablate.train(ablate.compose([*TINY, *PENALIZED, f"out_dir={run_dir}"]))
    _, rows, _ = ablate.load_run(run_dir)
    train_rows = [r for r in rows if "train/loss" in r]
    assert summary["status"] == "completed" and [r["step"] for r in train_rows] == [5, 10, 15, 20]
    assert all(r["train/aux/ffn"] > 0 for r in train_rows)
    assert not any("train/aux/ffn" in r for r in rows if "val/loss" in r)
    assert summary["final/train_loss"] == train_rows[-1]["train/loss"]


def test_the_divergence_guard_skips_fused_updates_from_the_first_bad_step_until_it_is_read():
    """A fused optimizer (on CUDA the trainer's; fused AdamW runs on CPU too) takes the guard's found_inf: the
    update of a non-finite step and of every later one is skipped on the device, with no host sync, so the loop
    may read the flag steps later and still stop with the weights from before the bad step."""
    weight = torch.nn.Parameter(torch.ones(4))
    optimizer = torch.optim.AdamW([weight], lr=0.1, fused=True)
    guard = DivergenceGuard(optimizer, "cpu")
    assert guard.deferred and not DivergenceGuard(torch.optim.AdamW([weight]), "cpu").deferred
    snapshots = []
    for step, loss in enumerate([1.0, 0.9, float("nan"), 0.8, 0.7], start=1):
        weight.grad = torch.full((4,), loss if loss == loss else float("nan"))
        guard.record(step, {"train/loss": torch.tensor(loss)})
        optimizer.step()
        snapshots.append(weight.detach().clone())
    assert guard.diverged()[0] == 3 and guard.diverged()[1]["train/loss"] != guard.diverged()[1]["train/loss"]
    assert not torch.equal(snapshots[1], snapshots[0])  # steps 1 and 2 updated
    for later in snapshots[2:]:
        assert torch.equal(later, snapshots[1])  # the bad step and every later one did not


def test_the_loss_meter_averages_since_the_previous_row():
    meter = LossMeter()
    for ce, aux in [(3.0, 0.5), (2.0, 0.25)]:
        meter.add({"train/loss": ce, "train/aux/ffn": aux})
    assert meter.means() == {"train/loss": 2.5, "train/aux/ffn": 0.375}
    meter.add({"train/loss": 1.0})
    assert meter.means() == {"train/loss": 1.0}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import of torch.jit internals
def test_parallelize_compiles_outside_the_model_and_shares_its_parameters():
    cfg = ablate.compose(["model=tiny", "attention=local", "attention.window=16"])
    model = ablate.build_model(cfg)
    assert parallelize(model, train_spec(cfg), "cpu") is model
    assert all(block.attn.flex.kernel is compiled_flex_attention() for block in model.blocks)  # compile_kernels
    compiled = parallelize(model, train_spec(ablate.compose(["train.compile=true"])), "cpu")
    # per block, into a training view: lazy (nothing compiles before a forward), the model itself stays eager
    assert compiled is not model and [b._orig_mod for b in compiled.blocks] == list(model.blocks)
    assert not any(isinstance(b, torch._dynamo.eval_frame.OptimizedModule) for b in model.blocks)
    assert [id(p) for p in compiled.parameters()] == [id(p) for p in model.parameters()]
    assert compiled.token_embedding is model.token_embedding and compiled.head is model.head


def test_compile_auto_compiles_on_cuda_only():
    from ablate.training.parallelize import compiles

    auto, off, on = (train_spec(ablate.compose([f"train.compile={v}"])) for v in ("auto", "false", "true"))
    assert train_spec(ablate.compose([])).compile == "auto"
    assert compiles(auto, "cuda") and compiles(auto, "cuda:1") and not compiles(auto, "cpu")
    assert not compiles(off, "cuda") and compiles(on, "cpu")


def test_compile_auto_keeps_the_config_hash_of_runs_recorded_with_compile_false():
    from ablate.track import config_hash

    assert config_hash(ablate.compose(["train.compile=auto"])) == config_hash(ablate.compose(["train.compile=false"]))
    assert config_hash(ablate.compose(["train.compile=true"])) != config_hash(ablate.compose(["train.compile=false"]))


def test_a_bad_compile_setting_is_one_line():
    from ablate.config import validate
    from ablate.spec import SpecError

    with pytest.raises(SpecError, match="train.compile=maybe must be auto .compile on CUDA only., true or false"):
        validate(ablate.compose([*TINY, "train.compile=maybe"]))


def test_per_row_means_equal_the_mean_of_the_per_step_values(tmp_path):
    """The losses stay on the device between train rows (no host sync per step): each row must still be the mean
    of the per-step values, i.e. of the rows a run logging every step writes."""
    base = [*TINY, "dropout=off", "train.eval_every=20"]
    ablate.train(ablate.compose([*base, "train.log_every=1", f"out_dir={tmp_path / 'every'}"]))
    ablate.train(ablate.compose([*base, "train.log_every=5", f"out_dir={tmp_path / 'fifth'}"]))
    every = [r for r in ablate.load_run(tmp_path / "every")[1] if "train/loss" in r]
    fifth = [r for r in ablate.load_run(tmp_path / "fifth")[1] if "train/loss" in r]
    assert [r["step"] for r in fifth] == [5, 10, 15, 20] and len(every) == 20
    for row in fifth:
        window = [r["train/loss"] for r in every if row["step"] - 5 < r["step"] <= row["step"]]
        assert row["train/loss"] == pytest.approx(sum(window) / 5, rel=1e-6)

