"""MLA against a plain computation of the DeepSeek-V2 equations (section 2.1, eqs. 37-47, with the RMSNorm after
each latent that the paper adds in section 3.1.2), one head at a time, in float64; its behaviour with each kind of
positional encoding; and its KV-cache size."""

from __future__ import annotations

import math

import pytest
import torch

from .helpers import DTYPE, TOL, build_layer, make_spec, reference_rope


def rms_norm(x, weight, eps=1e-6):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def deepseek_v2_mla(layer, pos, h):
    """h: (B, T, d) -> u: (B, T, d), reading the weight matrices out of the layer's stacked projections."""
    b, t, _ = h.shape
    n_h, d_c, d_h, d_r, d_v = layer.n_heads, layer.kv_lora_rank, layer.nope, layer.rope, layer.v_dim
    rope = reference_rope if pos.acts_on == "rotary" else (lambda x: x)

    # queries: c_Q = W_DQ h (eq. 37), q_C = W_UQ c_Q (38), q_R = RoPE(W_QR c_Q) (39); or straight from h
    if layer.q_lora_rank:
        source = rms_norm(h @ layer.q_down.weight.T, layer.q_norm.weight)
        w_q = layer.q_up.weight.view(n_h, d_h + d_r, -1)
    else:
        source, w_q = h, layer.q_proj.weight.view(n_h, d_h + d_r, -1)
    w_uq, w_qr = w_q[:, :d_h], w_q[:, d_h:]

    # keys and values: c_KV = W_DKV h (41), k_C = W_UK c_KV (42), k_R = RoPE(W_KR h) (43), v_C = W_UV c_KV (45)
    w_dkv, w_kr = layer.kv_down.weight[:d_c], layer.kv_down.weight[d_c:]
    c_kv = rms_norm(h @ w_dkv.T, layer.kv_norm.weight)
    w_kv = layer.kv_up.weight.view(n_h, d_h + d_v, d_c)
    w_uk, w_uv = w_kv[:, :d_h], w_kv[:, d_h:]
    k_r = rope((h @ w_kr.T)[:, None])[:, 0]  # (B, T, d_r): one rope key for all heads

    bias = pos.score_bias(0, t, h.device)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    heads = []
    for i in range(n_h):
        q = torch.cat([source @ w_uq[i].T, rope((source @ w_qr[i].T)[:, None])[:, 0]], dim=-1)  # (40)
        k = torch.cat([c_kv @ w_uk[i].T, k_r], dim=-1)  # (44)
        v = c_kv @ w_uv[i].T
        scores = q @ k.transpose(-1, -2) / math.sqrt(d_h + d_r)  # (46)
        if bias is not None:
            scores = scores + bias[i]
        heads.append(scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v)
    return torch.cat(heads, dim=-1) @ layer.out_proj.weight.T  # (47)


MLA_CASES = [
    {},  # defaults: latent d/4, nope = v = head_dim, rope = head_dim/2, no query latent
    {"q_lora_rank": 12, "kv_lora_rank": 10, "qk_nope_head_dim": 6, "qk_rope_head_dim": 4, "v_head_dim": 5},
    {"kv_lora_rank": 8, "qk_nope_head_dim": 4, "qk_rope_head_dim": 2, "v_head_dim": 12},  # v wider than q·k dims
]


@pytest.mark.parametrize("pos_enc", ["none", "learned", "rope", "alibi", "relative"])
@pytest.mark.parametrize("knobs", MLA_CASES, ids=["defaults", "q-latent", "wide-v"])
def test_mla_equals_deepseek_v2_equations(knobs, pos_enc):
    spec = make_spec("mla", pos_enc, attention_knobs=knobs)
    layer, pos = build_layer(spec)
    x = torch.randn(2, 19, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), deepseek_v2_mla(layer, pos, x), **TOL)


def test_mla_with_bias_in_linear_layers():
    spec = make_spec("mla", "rope", attention_knobs={"q_lora_rank": 8}, bias=True)
    layer, pos = build_layer(spec)
    x = torch.randn(1, 7, spec.d_model, dtype=DTYPE)
    assert all(m.bias is not None for m in layer.modules() if isinstance(m, torch.nn.Linear))
    y = layer(x, pos)
    for m in layer.modules():
        if isinstance(m, torch.nn.Linear):
            m.bias.data.zero_()
    assert not torch.allclose(y, layer(x, pos))


def test_only_the_decoupled_part_rotates_with_rope():
    """With rope, positions enter only through the decoupled part: once its projections are zero, rope and none
    give the same output (the nope part is never rotated)."""
    spec = make_spec("mla", "rope")
    layer, rope_pos = build_layer(spec)
    _, none_pos = build_layer(make_spec("mla", "none"))
    x = torch.randn(1, 9, spec.d_model, dtype=DTYPE)
    assert not torch.allclose(layer(x, rope_pos), layer(x, none_pos))
    with torch.no_grad():  # no decoupled part left: rotation has nothing to act on
        layer.q_proj.weight.view(spec.n_heads, layer.nope + layer.rope, -1)[:, layer.nope:] = 0
        layer.kv_down.weight[layer.kv_lora_rank:] = 0
    torch.testing.assert_close(layer(x, rope_pos), layer(x, none_pos), **TOL)


@pytest.mark.parametrize("model_dims,knobs,expected", [
    ((32, 4), {}, 8 + 4),  # defaults: d/4 + head_dim/2
    ((256, 8), {}, 64 + 16),  # model=small
    ((256, 8), {"kv_lora_rank": 32, "qk_rope_head_dim": 8}, 40),
])
def test_kv_cache_per_token(model_dims, knobs, expected):
    d, h = model_dims
    layer, _ = build_layer(make_spec("mla", attention_knobs=knobs, d_model=d, n_heads=h))
    assert layer.kv_cache_per_token == expected
    mha, _ = build_layer(make_spec("mha", d_model=d, n_heads=h))
    assert mha.kv_cache_per_token == 2 * d
