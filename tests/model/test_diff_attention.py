"""Differential attention (Ye et al. 2024, arXiv 2410.05258) against the paper's equations written out one head at a
time in float64: two softmax maps from the split query/key halves, their difference weighted by
λ = exp(λ_q1·λ_k1) − exp(λ_q2·λ_k2) + λ_init with λ_init = 0.8 − 0.6·exp(−0.3·(l − 1)), the per-head RMSNorm and the
(1 − λ_init) scale; its parameter count against MHA's, FLOPs, cache, causality and what it refuses."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import ablate
from ablate.config import validate
from ablate.model import count_parameters, flops_per_token
from ablate.spec import SpecError

from .helpers import DTYPE, TOL, assert_causal, build_layer, make_spec, reference_rope
from .test_sparse_attention import saved_numels


def paper_lambda_init(depth: int) -> float:
    return 0.8 - 0.6 * math.exp(-0.3 * (depth - 1))


def rms_norm(x, gain, eps=1e-5):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


def diff_reference(layer, pos, x, depth, qk_norm=False, gate=False, first_values=None):
    """MultiHead(X) = Concat_i((1 − λ_init)·RMSNorm(DiffAttn_i(X))) W_O, DiffAttn_i = (A1 − λ A2) V_i. Head i's
    columns of W_Q and W_K are [half 1 ; half 2] of d channels each; its W_V columns are 2d channels."""
    t, d_model = x.shape[1:]
    n, d = d_model // (2 * layer.head_dim), layer.head_dim
    w_k, w_v = layer.kv_proj.weight[:d_model], layer.kv_proj.weight[d_model:]
    lam = (torch.exp(torch.dot(layer.lambda_q1, layer.lambda_k1))
           - torch.exp(torch.dot(layer.lambda_q2, layer.lambda_k2)) + paper_lambda_init(depth))
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    heads = []
    for i in range(n):
        w_q1, w_q2, w_k1, w_k2 = (w[(2 * i + j) * d:(2 * i + j + 1) * d] for w in (layer.q_proj.weight, w_k)
                                  for j in (0, 1))  # head i's rows: [half 1 ; half 2]
        q1, q2, k1, k2 = x @ w_q1.T, x @ w_q2.T, x @ w_k1.T, x @ w_k2.T
        if qk_norm:
            q1, q2 = (rms_norm(z, layer.qk_norm.q.weight, 1e-6) for z in (q1, q2))
            k1, k2 = (rms_norm(z, layer.qk_norm.k.weight, 1e-6) for z in (k1, k2))
        if pos.acts_on == "rotary":
            q1, q2, k1, k2 = (reference_rope(z) for z in (q1, q2, k1, k2))
        a1 = (q1 @ k1.transpose(-1, -2) / math.sqrt(d)).masked_fill(~causal, float("-inf")).softmax(-1)
        a2 = (q2 @ k2.transpose(-1, -2) / math.sqrt(d)).masked_fill(~causal, float("-inf")).softmax(-1)
        v = x @ w_v[i * 2 * d:(i + 1) * 2 * d].T
        if first_values is not None:  # value residual: ½·V + ½·V_1
            v = 0.5 * v + 0.5 * first_values[:, i]
        head = (1 - paper_lambda_init(depth)) * rms_norm((a1 - lam * a2) @ v, layer.head_norm.weight)
        if gate:
            head = head * torch.sigmoid(x @ layer.gate_proj.weight[i * 2 * d:(i + 1) * 2 * d].T)
        heads.append(head)
    return torch.cat(heads, dim=-1) @ layer.out_proj.weight.T


@pytest.mark.parametrize("layer_index", [0, 3])
@pytest.mark.parametrize("pos_enc", ["none", "learned", "rope"])
def test_equals_the_papers_equations(pos_enc, layer_index):
    spec = make_spec("diff", pos_enc, n_layers=4)
    layer, pos = build_layer(spec, layer_index)
    x = torch.randn(2, 20, spec.d_model, dtype=DTYPE)
    y = layer(x, pos)
    assert y.shape == x.shape
    torch.testing.assert_close(y, diff_reference(layer, pos, x, depth=layer_index + 1), **TOL)


@pytest.mark.parametrize("qk_norm,gate", [(True, False), (False, True)], ids=["qk_norm", "gate"])
def test_knobs_equal_the_papers_equations_with_them(qk_norm, gate):
    spec = make_spec("diff", "rope", attention_knobs={"qk_norm": qk_norm, "gate": gate})
    layer, pos = build_layer(spec)
    x = torch.randn(2, 20, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), diff_reference(layer, pos, x, 1, qk_norm, gate), **TOL)


def test_lambda_init_by_depth():
    spec = make_spec("diff", n_layers=6)
    inits = [spec.attention.build(spec, layer).lambda_init for layer in range(6)]
    assert inits == pytest.approx([paper_lambda_init(depth) for depth in range(1, 7)], abs=1e-15)
    assert inits[0] == pytest.approx(0.2) and all(a < b < 0.8 for a, b in itertools.pairwise(inits))


def test_the_second_map_is_subtracted():
    """λ scales the second map: changing it changes the output (with λ = 0 it would be plain softmax attention)."""
    layer, pos = build_layer(make_spec("diff", "rope"))
    x = torch.randn(1, 16, 32, dtype=DTYPE)
    before = layer(x, pos)
    with torch.no_grad():
        layer.lambda_q2.mul_(2.0)
    assert (layer(x, pos) - before).abs().max() > 1e-4


@pytest.mark.parametrize("pos_enc", ["none", "learned", "sinusoidal", "rope"])
def test_causal(pos_enc):
    assert_causal([f"pos_enc={pos_enc}", "attention=diff"])


@pytest.mark.parametrize("model", ["tiny", "small"])
def test_parameters_match_mha_up_to_lambda_and_norm(model):
    """Per layer 4·d_model² + 6·head_dim (λ_q1, λ_k1, λ_q2, λ_k2 and the RMSNorm gain), MHA's 4·d_model² + 0."""
    counts = {}
    for attention in ("mha", "diff"):
        m = ablate.build_model(ablate.compose([f"model={model}", f"attention={attention}"]))
        counts[attention] = count_parameters(m)["total"]
        spec = m.spec
        extra = 6 * spec.head_dim if attention == "diff" else 0
        assert sum(p.numel() for p in m.blocks[0].attn.parameters()) == 4 * spec.d_model**2 + extra
    assert counts["diff"] - counts["mha"] == spec.n_layers * 6 * spec.head_dim


def test_flops_and_cache_are_mhas():
    """The same 4·T·d_model score and value FLOPs per token and 2·d_model cached numbers as MHA; 6·N covers the rest."""
    mha, diff = (ablate.build_model(ablate.compose(["model=tiny", f"attention={a}"])) for a in ("mha", "diff"))
    extra = count_parameters(diff)["total"] - count_parameters(mha)["total"]
    assert flops_per_token(diff) - flops_per_token(mha) == 6 * extra
    layer = diff.blocks[0].attn
    assert layer.context_flops(64) == 4 * 64 * 64 and layer.kv_cache_per_token == 2 * 64
    assert layer.keys_per_query(64) == 64


@pytest.mark.parametrize("overrides,message", [
    (["pos_enc=alibi"], "pos_enc=alibi cannot be used with attention=diff: a score bias"),
    (["pos_enc=relative"], "pos_enc=relative cannot be used with attention=diff: a score bias"),
    (["model.n_heads=1"], "attention=diff needs an even model.n_heads"),
])
def test_refuses_what_it_cannot_take_in_one_line(overrides, message):
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["model=tiny", "attention=diff", *overrides]))
    assert len(error.value.problems) == 1 and message in error.value.problems[0], error.value.problems


def test_training_keeps_no_t_by_t_tensor():
    """Both maps go through SDPA's fused kernel (q and k padded to v's head dim), never a materialized T×T."""
    spec = make_spec("diff", "rope", d_model=16, n_heads=2, block_size=1024)
    layer, pos = build_layer(spec)
    layer.train()
    x = torch.randn(1, 1024, 16, dtype=DTYPE, requires_grad=True)
    assert max(saved_numels(layer, pos, x)) < 1024 * 1024 / 4
