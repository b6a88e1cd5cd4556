"""ffn=moe against references written from the papers' equations: a per-token loop over the routed and shared
experts (float64), the load-balancing loss by hand, the bias update rule, capacity in token order, the counts and
the match rule by formula, validation, and real runs (router curves logged, exact resume, two processes)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import ablate
from ablate.config import validate
from ablate.model import count_parameters, flops_per_token
from ablate.model.moe import MoE, grouped_gemm_fits, grouped_matmul
from ablate.spec import SpecError
from ablate.training.loop import train
from tests.model.helpers import DTYPE, TOL, choice, make_spec

TINY = ["model=tiny", "train=smoke", "logger=none", "data.max_bytes=3000000", "device=cpu", "dropout=off"]


def build(knobs: dict | None = None, d_model: int = 16, n_layers: int = 1, dtype=DTYPE) -> MoE:
    spec = dataclasses.replace(make_spec(d_model=d_model, n_layers=n_layers), ffn=choice("ffn", "moe", knobs))
    module = spec.ffn.build(spec).to(dtype)
    for p in module.parameters():  # every weight matters, router scores well apart
        torch.nn.init.normal_(p, std=0.5)
    return module


def swiglu(x, gate, up, down):
    """One SwiGLU expert, weights as (in, out) matrices."""
    return (F.silu(x @ gate) * (x @ up)) @ down


def reference(moe: MoE, x: torch.Tensor, capacity: int | None = None) -> torch.Tensor:
    """Token by token: router scores, the top_k experts (by score + bias for balance=bias), the weighted sum of
    their outputs, plus each shared expert (as its own SwiGLU: its slice of the shared weights). With `capacity`,
    an expert takes only its first `capacity` assignments in token order."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.zeros_like(flat)
    taken = [0] * moe.n_experts
    h = moe.hidden
    shared = 0 if moe.shared is None else moe.shared["gate"].weight.shape[0] // h
    for t, token in enumerate(flat):
        logits = moe.router.weight @ token
        if moe.balance == "bias":
            scores = 1 / (1 + torch.exp(-logits))
            chosen = sorted(range(moe.n_experts), key=lambda i: -(scores[i] + moe.selection_bias[i]))[:moe.top_k]
            total = sum(scores[i] for i in chosen)
            weights = {i: scores[i] / total for i in chosen}
        else:
            scores = torch.exp(logits) / torch.exp(logits).sum()
            chosen = sorted(range(moe.n_experts), key=lambda i: -scores[i])[:moe.top_k]
            weights = {i: scores[i] for i in chosen}
        for i in sorted(chosen):  # the sorted path visits a token's experts in expert order
            taken[i] += 1
            if capacity is not None and taken[i] > capacity:
                continue
            out[t] += weights[i] * swiglu(token, moe.w_gate[i], moe.w_up[i], moe.w_down[i])
        for s in range(shared):
            rows = slice(s * h, (s + 1) * h)
            out[t] += swiglu(token, moe.shared["gate"].weight[rows].T, moe.shared["up"].weight[rows].T,
                             moe.shared["down"].weight[:, rows].T)
    return out.reshape(x.shape)


@pytest.mark.parametrize("knobs", [
    {}, {"top_k": 1, "shared_experts": 0}, {"shared_experts": 2, "n_experts": 4, "top_k": 3},
    {"balance": "bias"}, {"balance": "bias", "top_k": 1, "match": "flops"},
], ids=["default", "top1-unshared", "2shared", "bias", "bias-top1-flops"])
def test_forward_equals_the_per_token_loop(knobs):
    moe = build(knobs).eval()
    if moe.balance == "bias":  # a bias that changes the choice: only the selection sees it
        moe.selection_bias.copy_(torch.randn(moe.n_experts))
    x = torch.randn(2, 7, 16, dtype=DTYPE)
    torch.testing.assert_close(moe(x), reference(moe, x), **TOL)
    moe.train()
    torch.testing.assert_close(moe(x), reference(moe, x), **TOL)  # training without a capacity: the same


def test_a_capacity_drops_an_experts_assignments_past_it_in_token_order_in_training_only():
    moe = build({"capacity_factor": 0.5, "n_experts": 4})
    x = torch.randn(3, 8, 16, dtype=DTYPE)
    capacity = math.ceil(0.5 * 24 * 2 / 4)
    torch.testing.assert_close(moe.train()(x), reference(moe, x, capacity), **TOL)
    moe.after_step(lambda t: t)
    drop = moe.metrics()["drop"]
    _, experts, _ = moe.route(x.reshape(-1, 16))
    counts = torch.bincount(experts.flatten(), minlength=4)
    assert drop.item() == pytest.approx((counts - capacity).clamp(min=0).sum().item() / 48) and drop > 0
    torch.testing.assert_close(moe.eval()(x), reference(moe, x), **TOL)


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped_mm", "loop"])
def test_the_grouped_matmul_equals_a_loop_over_groups_with_gradients_and_an_empty_group(grouped):
    """Both paths on the CPU (torch's grouped GEMM runs eagerly there in float32; training uses it on CUDA)."""
    x = torch.randn(10, 8, requires_grad=True)
    w = torch.randn(3, 8, 16, requires_grad=True)
    counts = torch.tensor([4, 0, 6])
    out = grouped_matmul(x, w, counts, grouped)
    upstream = torch.randn(10, 16)
    out.backward(upstream)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    expected = torch.cat([x64[:4] @ w64[0], x64[4:] @ w64[2]])
    expected.backward(upstream.double())
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.grad.double(), w64.grad, atol=1e-5, rtol=1e-5)


def test_the_grouped_gemm_is_used_where_torch_documents_it():
    assert not grouped_gemm_fits(torch.zeros(4, 16, dtype=torch.bfloat16))  # CPU
    assert not grouped_gemm_fits(torch.zeros(4, 16))


def test_float32_through_the_grouped_gemm_matches_the_float64_reference():
    moe = build({"n_experts": 4, "top_k": 2}, d_model=32).eval()
    x = torch.randn(2, 9, 32, dtype=DTYPE)
    expected = reference(moe, x)
    got = moe.float()(x.float())
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-4)


def test_the_aux_loss_is_coef_times_e_times_sum_of_load_share_times_mean_probability():
    moe = build({"aux_loss_coef": 0.1}).train()
    x = torch.randn(4, 5, 16, dtype=DTYPE)
    moe(x)
    flat = x.reshape(-1, 16)
    probs = torch.softmax(flat @ moe.router.weight.T, dim=-1)  # (20, 8)
    chosen = probs.topk(2, dim=-1).indices
    share = [(chosen == i).sum().item() / (20 * 2) for i in range(8)]
    expected = 0.1 * 8 * sum(share[i] * probs[:, i].mean() for i in range(8))
    torch.testing.assert_close(moe.aux_loss(), expected, **TOL)
    loss = moe.aux_loss()
    loss.backward()
    assert moe.router.weight.grad.abs().sum() > 0  # the loss trains the router (through P)
    moe.eval()(x)
    assert moe.aux_loss() is None
    assert build({"balance": "bias"}).train()(x) is not None and build({"balance": "bias"}).aux_loss() is None
    uniform = build({"aux_loss_coef": 0.1}).train()
    torch.nn.init.zeros_(uniform.router.weight)  # P_i = 1/E whatever the choice: the loss is its minimum, coef
    uniform(x)
    torch.testing.assert_close(uniform.aux_loss(), torch.tensor(0.1, dtype=DTYPE), **TOL)


def test_the_bias_moves_by_rate_times_sign_of_mean_load_minus_load_after_each_step():
    moe = build({"balance": "bias", "bias_rate": 0.25}).train()
    x1, x2 = torch.randn(2, 6, 16, dtype=DTYPE), torch.randn(3, 4, 16, dtype=DTYPE)
    loads = []
    for x in (x1, x2):  # two micro-batches of one step
        _, experts, _ = moe.route(x.reshape(-1, 16))
        loads.append(torch.bincount(experts.flatten(), minlength=8).double())
        moe(x)
    other_process = torch.arange(8, dtype=torch.float32)
    moe.after_step(lambda t: t + other_process)  # reduce: the load of every process
    load = loads[0] + loads[1] + other_process.double()
    expected = 0.25 * torch.sign(load.mean() - load)
    torch.testing.assert_close(moe.selection_bias, expected, **TOL)
    metrics = moe.metrics()
    shares = torch.stack([metrics[f"load/{i}"] for i in range(8)]).double()  # counted in float32
    torch.testing.assert_close(shares, load / load.sum(), atol=1e-7, rtol=0)
    assert metrics["imbalance"].item() == pytest.approx((load.max() / load.mean()).item())
    moe.after_step(lambda t: t)  # no forward since: nothing moves, nothing to log
    torch.testing.assert_close(moe.selection_bias, expected, **TOL)
    assert moe.metrics() == {}
    moe.eval()(x1)  # evaluation neither counts nor moves the bias
    moe.after_step(lambda t: t)
    assert moe.metrics() == {} and "selection_bias" in moe.state_dict()


def test_imbalance_is_the_mean_over_steps_of_max_over_mean_load():
    moe = build({"n_experts": 4, "top_k": 1, "shared_experts": 0}).train()
    ratios = []
    for _ in range(3):
        x = torch.randn(1, 6, 16, dtype=DTYPE)
        _, experts, _ = moe.route(x.reshape(-1, 16))
        load = torch.bincount(experts.flatten(), minlength=4).double()
        ratios.append((load.max() / load.mean()).item())
        moe(x)
        moe.after_step(lambda t: t)
    assert moe.metrics()["imbalance"].item() == pytest.approx(sum(ratios) / 3)


@pytest.mark.parametrize("match,n_experts,shared", [("params", 6, 1), ("flops", 8, 1), ("params", 7, 0)])
def test_the_match_rule_and_the_active_counts_by_formula(match, n_experts, shared):
    """model=tiny: d 64, 2 layers, dense swiglu width 2/3·4·64 → 168 (3·64·168 weights per layer). Chosen so the
    rule divides exactly: params → 168/(E+S) = 24, flops → 168/(top_k+S) = 56."""
    base = ["model=tiny", "dropout=off"]
    dense = ablate.build_model(ablate.compose([*base, "ffn=swiglu"]))
    moe = ablate.build_model(ablate.compose([*base, "ffn=moe", f"ffn.match={match}", f"ffn.n_experts={n_experts}",
                                             f"ffn.shared_experts={shared}"]))
    d, layers, k = 64, 2, 2
    h = 168 // (n_experts + shared) if match == "params" else 168 // (k + shared)
    assert moe.blocks[0].ffn.hidden == h
    router, expert = d * n_experts, 3 * d * h
    dense_counts, counts = count_parameters(dense), count_parameters(moe)
    assert counts["total"] == dense_counts["total"] + layers * (router + (n_experts + shared) * expert - 3 * d * 168)
    assert counts["active"] == counts["total"] - layers * (n_experts - k) * expert
    assert counts["active"] == dense_counts["active"] + layers * (router + (k + shared) * expert - 3 * d * 168)
    # FLOPs per token: 6 per active weight (PaLM), so moe − dense = 6 · layers · (active FFN − dense FFN)
    assert flops_per_token(moe) - flops_per_token(dense) == 6 * layers * (router + (k + shared) * expert - 3 * d * 168)
    if match == "params":
        assert counts["total"] - dense_counts["total"] == layers * router  # the same, but for the router
    if match == "flops":
        assert flops_per_token(moe) - flops_per_token(dense) == 6 * layers * router
        assert moe.blocks[0].ffn.active_parameters() == router + 3 * 3 * d * h


@pytest.mark.parametrize("knobs", [{}, {"top_k": 3, "shared_experts": 2}, {"shared_experts": 0, "match": "flops"}])
def test_forward_flops_counted_by_torch_are_two_per_active_parameter_per_token(knobs):
    """torch's FlopCounterMode over the forward's matmuls: 2 FLOPs per active weight per token (router, top_k
    routed experts, shared experts), so the PaLM count of flops_per_token holds for the MoE layer."""
    from torch.utils.flop_counter import FlopCounterMode

    moe = build(knobs, d_model=32).eval()
    x = torch.randn(4, 16, 32, dtype=DTYPE)
    with FlopCounterMode(display=False) as counter:
        moe(x)
    assert counter.get_total_flops() == 2 * 64 * moe.active_parameters()
    assert moe.active_parameters() < sum(p.numel() for p in moe.parameters())


def test_the_expert_width_rounds_to_the_nearest_multiple_and_never_to_zero():
    sizes = {(m, e): ablate.build_model(ablate.compose(["model=small", "ffn=moe", f"ffn.match={m}",
                                                        f"ffn.n_experts={e}"])).blocks[0].ffn.hidden
             for m, e in (("params", 8), ("flops", 8), ("params", 64))}
    # dense swiglu at d 256: 2/3·4·256 = 682.7 → 680; params: 680/9 = 75.6 → 72; flops: 680/3 = 226.7 → 224;
    # 64 experts: 680/65 = 10.5 → 8
    assert sizes == {("params", 8): 72, ("flops", 8): 224, ("params", 64): 8}


def test_expert_router_and_shared_weights_decay_and_the_bias_is_no_parameter():
    from ablate.training.optim import parameter_groups

    model = ablate.build_model(ablate.compose(["model=tiny", "ffn=moe", "ffn.balance=bias"]))
    decay, _ = parameter_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    moe = model.blocks[0].ffn
    assert {id(p) for p in moe.parameters()} <= decayed and moe.w_gate.dim() == 3
    assert "selection_bias" not in dict(moe.named_parameters()) and "selection_bias" in dict(moe.named_buffers())


@pytest.mark.parametrize("override,message", [
    ("ffn.top_k=9", "ffn.top_k=9 must be between 1 and ffn.n_experts=8"),
    ("ffn.top_k=0", "ffn.top_k=0 must be between 1 and ffn.n_experts=8"),
    ("ffn.n_experts=0", "ffn.n_experts=0 must be >= 1"),
    ("ffn.shared_experts=-1", "ffn.shared_experts=-1 must be >= 0"),
    ("ffn.balance=loss", "ffn.balance=loss must be one of: aux_loss, bias"),
    ("ffn.match=time", "ffn.match=time must be one of: params, flops"),
    ("ffn.bias_rate=-0.1", "ffn.bias_rate=-0.1 must be >= 0 and finite"),
    ("ffn.capacity_factor=nan", "ffn.capacity_factor=nan must be >= 0 and finite"),
    ("model.bias=true", "ffn=moe has no bias terms: set model.bias=false"),
])
def test_bad_knobs_are_one_line_each(override, message):
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["ffn=moe", override]))
    assert error.value.problems == [message]


def test_a_run_logs_router_curves_and_the_aux_loss(tmp_path):
    summary = ablate.train(ablate.compose([*TINY, "ffn=moe", "ffn.capacity_factor=1.0",
                                           f"out_dir={tmp_path / 'run'}"]))
    rows = [r for r in ablate.load_run(tmp_path / "run")[1] if "train/loss" in r]
    assert summary["status"] == "completed" and len(rows) == 4
    for row in rows:
        for layer in (0, 1):
            assert sum(row[f"train/ffn/{layer}/load/{i}"] for i in range(8)) == pytest.approx(1.0)
            assert 1.0 <= row[f"train/ffn/{layer}/imbalance"] <= 8 / 2 and 0 <= row[f"train/ffn/{layer}/drop"] < 1
        assert row["train/ffn/imbalance"] == pytest.approx(
            (row["train/ffn/0/imbalance"] + row["train/ffn/1/imbalance"]) / 2)
        assert row["train/aux/ffn"] > 0
    assert summary["params/active"] < summary["params/total"]


def test_a_bias_balanced_run_resumes_exactly_bias_included(tmp_path):
    base = [*TINY, "ffn=moe", "ffn.balance=bias", "ffn.bias_rate=0.01", "train.checkpoint_every=5"]
    whole = ablate.train(ablate.compose([*base, f"out_dir={tmp_path / 'whole'}"]))

    def stop_at_12(state):
        if state.step == 12:
            raise RuntimeError("stopped at step 12")

    with pytest.raises(RuntimeError, match="stopped at step 12"):
        train(ablate.compose([*base, f"out_dir={tmp_path / 'resumed'}"]), hooks=[stop_at_12])
    resumed = ablate.train(ablate.compose([*base, f"out_dir={tmp_path / 'resumed'}"]))
    assert resumed["status"] == "completed" and resumed["final/val_loss"] == whole["final/val_loss"]
    weights = {name: torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["model"]
               for name in ("whole", "resumed")}
    bias = weights["whole"]["blocks.0.ffn.selection_bias"]
    assert bias.abs().sum() > 0  # the loop moved it
    for key, value in weights["whole"].items():
        assert torch.equal(weights["resumed"][key], value), key


def test_two_processes_balance_on_the_global_load(tmp_path):
    """Under DDP every process updates its bias from the loads of all processes (one all-reduce), so the biases
    stay equal across processes and the run is the one-process run at the same global batch."""
    from tests.training.test_ddp import torchrun

    overrides = [*TINY, "ffn=moe", "ffn.balance=bias", "ffn.bias_rate=0.01", "train.max_steps=10"]
    run_dir = tmp_path / "two"
    result = torchrun("-m", "ablate.run", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    one = ablate.train(ablate.compose([*overrides, f"out_dir={tmp_path / 'one'}"]))
    rows = {name: [r for r in ablate.load_run(tmp_path / name)[1] if "train/loss" in r] for name in ("one", "two")}
    assert abs(ablate.load_run(run_dir)[2]["final/val_loss"] - one["final/val_loss"]) < 1e-4
    for a, b in zip(rows["one"], rows["two"], strict=True):
        assert a["train/ffn/0/load/3"] == pytest.approx(b["train/ffn/0/load/3"], abs=1e-6)
