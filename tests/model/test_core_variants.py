"""The issue-2 variants (mha, mqa, gqa; none, learned, sinusoidal, rope; relu, gelu, swiglu; pre, post; dropout)
against plain references: causality, GQA == naive MHA, MQA == GQA(1), parameter counts from a formula written here,
SwiGLU's parameter match, the order of operations of each placement, and dropout off."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import ablate
from ablate.model import count_parameters
from ablate.config import model_spec

from .helpers import DTYPE, TOL, assert_causal, build_layer, make_spec, mha_projections, reference_softmax_attention

CORE_PAIRS = list(itertools.product(["none", "learned", "sinusoidal", "rope"], ["mha", "mqa", "gqa"]))


@pytest.mark.parametrize("pos_enc,attention", CORE_PAIRS, ids=[f"pos_enc={p},attention={a}" for p, a in CORE_PAIRS])
def test_core_pairs_are_causal(pos_enc, attention):
    assert_causal([f"pos_enc={pos_enc}", f"attention={attention}"])


def naive_mha(x, w_q, w_k, w_v, w_o, n_heads):
    """Multi-head causal self-attention, one head at a time, from the weight matrices (Vaswani et al., 2017)."""
    b, t, d = x.shape
    hd = d // n_heads
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    heads = []
    for i in range(n_heads):
        rows = slice(i * hd, (i + 1) * hd)
        q, k, v = x @ w_q[rows].T, x @ w_k[rows].T, x @ w_v[rows].T  # (B, T, hd)
        scores = (q @ k.transpose(-1, -2) / hd**0.5).masked_fill(~causal, float("-inf"))
        heads.append(scores.softmax(-1) @ v)
    return torch.cat(heads, dim=-1) @ w_o.T


def test_gqa_with_all_kv_heads_is_naive_mha():
    spec = make_spec("gqa", attention_knobs={"n_kv_heads": 4})
    layer, pos = build_layer(spec)
    x = torch.randn(2, 20, spec.d_model, dtype=DTYPE)
    w_k, w_v = layer.kv_proj.weight.chunk(2, dim=0)
    expected = naive_mha(x, layer.q_proj.weight, w_k, w_v, layer.out_proj.weight, spec.n_heads)
    torch.testing.assert_close(layer(x, pos), expected, **TOL)

    mha, _ = build_layer(make_spec("mha"))
    mha.load_state_dict(layer.state_dict())
    torch.testing.assert_close(mha(x, pos), expected, **TOL)


def test_gqa_shares_each_kv_head_across_its_query_group():
    spec = make_spec("gqa", attention_knobs={"n_kv_heads": 2})
    layer, pos = build_layer(spec)
    x = torch.randn(2, 12, spec.d_model, dtype=DTYPE)
    q, k, v = mha_projections(layer, x)  # k, v: (B, 2, T, D)
    k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)  # heads 0,1 use kv head 0; 2,3 use 1
    y = reference_softmax_attention(q, k, v, torch.ones(12, 12, dtype=torch.bool).tril())
    torch.testing.assert_close(layer(x, pos), y.transpose(1, 2).flatten(2) @ layer.out_proj.weight.T, **TOL)


def test_mqa_is_gqa_with_one_kv_head():
    mqa, pos = build_layer(make_spec("mqa"))
    gqa, _ = build_layer(make_spec("gqa", attention_knobs={"n_kv_heads": 1}))
    gqa.load_state_dict(mqa.state_dict())
    x = torch.randn(2, 16, 32, dtype=DTYPE)
    torch.testing.assert_close(mqa(x, pos), gqa(x, pos), **TOL)


def expected_parameters(d, n_layers, n_heads, block_size, vocab, attention, ffn, norm, pos_enc, bias=False) -> int:
    """Parameter count written from each variant's definition (biases off, tied head)."""
    hd = d // n_heads
    attn = {
        "mha": 4 * d * d,
        "mqa": 2 * d * d + 2 * d * hd,
        "gqa": 2 * d * d + 2 * d * 2 * hd,
        "local": 4 * d * d,
        "bigbird": 4 * d * d,
        "linear": 4 * d * d,
        # defaults: latent d/4, nope = v = head_dim, rope = head_dim/2, no query latent; RMSNorm on the latent
        "mla": d * n_heads * (hd + hd // 2) + d * (d // 4 + hd // 2) + d // 4 + (d // 4) * n_heads * 2 * hd
        + n_heads * hd * d,
    }[attention]
    gated_hidden = 8 * round(2 / 3 * 4 * d / 8)
    mlp = {"relu": 8 * d * d, "gelu": 8 * d * d, "silu": 8 * d * d, "swiglu": 3 * d * gated_hidden,
           "geglu": 3 * d * gated_hidden}[ffn]
    norm_params = {"layernorm": d, "rmsnorm": d, "none": 0}[norm]
    pos_params = {"learned": block_size * d, "relative": 32 * n_heads}.get(pos_enc, 0)
    per_layer = attn + mlp + 2 * norm_params
    return vocab * d + pos_params + n_layers * per_layer + norm_params  # + the final norm (pre placement)


PARAM_CASES = [
    ("mha", "relu", "layernorm", "learned"),
    ("mqa", "gelu", "rmsnorm", "none"),
    ("gqa", "swiglu", "layernorm", "rope"),
    ("local", "silu", "none", "sinusoidal"),
    ("bigbird", "geglu", "rmsnorm", "relative"),
    ("linear", "relu", "layernorm", "rope"),
    ("mla", "swiglu", "layernorm", "alibi"),
]


@pytest.mark.parametrize("model", ["tiny", "small"])
@pytest.mark.parametrize("attention,ffn,norm,pos_enc", PARAM_CASES, ids=["-".join(c) for c in PARAM_CASES])
def test_parameter_count_matches_formula(model, attention, ffn, norm, pos_enc):
    cfg = ablate.compose([f"model={model}", f"attention={attention}", f"ffn={ffn}", f"norm={norm}",
                          f"pos_enc={pos_enc}"])
    spec = model_spec(cfg, vocab_size=256)
    from ablate.model import TransformerLM

    got = count_parameters(TransformerLM(spec))["total"]
    assert got == expected_parameters(spec.d_model, spec.n_layers, spec.n_heads, spec.block_size, 256,
                                      attention, ffn, norm, pos_enc)


@pytest.mark.parametrize("gated", ["swiglu", "geglu"])
@pytest.mark.parametrize("model", ["tiny", "small", "base"])
def test_gated_ffn_within_two_percent_of_relu_mlp(model, gated):
    def ffn_params(name):
        spec = model_spec(ablate.compose([f"model={model}", f"ffn={name}"]), vocab_size=256)
        return sum(p.numel() for p in spec.ffn.build(spec).parameters())

    assert abs(ffn_params(gated) / ffn_params("relu") - 1) <= 0.02


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_placement_order_of_operations(placement):
    cfg = ablate.compose(["model=tiny", f"placement={placement}", "norm=layernorm", "dropout=off"])
    model = ablate.build_model(cfg).to(DTYPE).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)  # norms' weights too, so every order gives a different result
    block, pos = model.blocks[0], model.pos_enc
    x = torch.randn(2, 10, 64, dtype=DTYPE)
    attn, ffn, n1, n2 = block.attn, block.ffn, block.norm1, block.norm2
    if placement == "pre":
        h = x + attn(n1(x), pos)
        expected = h + ffn(n2(h))
        assert isinstance(model.final_norm, torch.nn.LayerNorm)
    else:
        h = n1(x + attn(x, pos))
        expected = n2(h + ffn(h))
        assert isinstance(model.final_norm, torch.nn.Identity)
    torch.testing.assert_close(block(x, pos), expected, **TOL)


def test_dropout_off_gives_identical_outputs_in_train_mode():
    ids = torch.randint(0, 256, (2, 32))
    model = ablate.build_model(ablate.compose(["model=tiny", "dropout=off"])).train()
    torch.testing.assert_close(model(ids), model(ids), atol=0, rtol=0)
    model_on = ablate.build_model(ablate.compose(["model=tiny", "dropout=on"])).train()
    assert not torch.equal(model_on(ids), model_on(ids))
    model_on.eval()
    torch.testing.assert_close(model_on(ids), model_on(ids), atol=0, rtol=0)


def test_activations_of_non_gated_mlps():
    x = torch.randn(3, 64)
    for name, act in (("relu", F.relu), ("gelu", F.gelu), ("silu", F.silu)):
        spec = model_spec(ablate.compose(["model=tiny", f"ffn={name}"]), vocab_size=256)
        mlp = spec.ffn.build(spec)
        torch.testing.assert_close(mlp(x), act(x @ mlp.up.weight.T) @ mlp.down.weight.T)
