"""Gated linear attention (gla), DeltaNet (deltanet), Gated DeltaNet (gated_deltanet) and Mamba-2 (mamba2) against
their recurrences written out token by token in float64 (GLA: Yang et al. 2024, arXiv 2312.06635; the delta rule:
Schlag et al. 2021; gated: Yang et al. 2025, arXiv 2412.06464; SSD: Dao and Gu 2024, arXiv 2405.21060), for several
chunk sizes, and GLA with gates close to zero (the chunked form's exponents must stay bounded). Causality, decoding
and the contract run in the generic tests over every discovered option."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ablate
from ablate.config import validate
from ablate.model.attention_gated import gla_chunked
from ablate.spec import SpecError

from .helpers import DTYPE, build_layer, make_spec


def recurrent_gla(layer, x: torch.Tensor) -> torch.Tensor:
    """The GLA layer from its weights, one token at a time: S_t = diag(α_t) S_{t-1} + k_t v_tᵀ, o_t = S_tᵀ q_t / √D,
    α_t = sigmoid(x_t W_α1 W_α2 + b)^(1/τ), y_t = W_O (RMSNorm_head(o_t) ⊙ SiLU(x_t W_r))."""
    b, t, _ = x.shape
    h, d = layer.n_heads, layer.head_dim
    w_k, w_v = layer.kv_proj.weight.chunk(2, dim=0)
    state = torch.zeros(b, h, d, d, dtype=x.dtype)
    outputs = []
    for i in range(t):
        xi = x[:, i]
        q, k, v = ((xi @ w.T).view(b, h, d) for w in (layer.q_proj.weight, w_k, w_v))
        alpha = torch.sigmoid(layer.alpha_up(layer.alpha_down(xi))).view(b, h, d) ** (1 / layer.gate_temperature)
        state = alpha[..., None] * state + k[..., None] * v[..., None, :]
        o = (state * q[..., None]).sum(-2) / d**0.5  # (B, H, D)
        o = rms(o, layer.out_norm.weight)
        outputs.append((o.flatten(1) * F.silu(layer.out_gate(xi))) @ layer.out_proj.weight.T)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("chunk_size", [1, 16])
def test_gla_equals_its_recurrence_at_every_chunk_size(chunk_size):
    spec = make_spec("gla", "none", attention_knobs={"chunk_size": chunk_size, "gate_rank": 4,
                                                     "gate_temperature": 16.0}, block_size=40)
    layer, pos = build_layer(spec)
    x = torch.randn(2, 40, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), recurrent_gla(layer, x), atol=1e-10, rtol=1e-10)


def test_chunks_stay_exact_when_gates_nearly_close():
    """log α down to -40 per token: a chunk's products of gates reach e^-600, below float64's range as a factor
    pulled out of the chunk; formed per pair, every exponent is <= 0 and the result equals the recurrence."""
    torch.manual_seed(0)
    b, h, t, d = 1, 2, 48, 4
    q, k, v = (torch.randn(b, h, t, d, dtype=DTYPE) for _ in range(3))
    log_alpha = -40 * torch.rand(b, h, t, d, dtype=DTYPE)
    state, expected = torch.zeros(b, h, d, d, dtype=DTYPE), []
    for i in range(t):
        state = log_alpha[:, :, i].exp()[..., None] * state + k[:, :, i, :, None] * v[:, :, i, None, :]
        expected.append((state * q[:, :, i, :, None]).sum(-2))
    out, last = gla_chunked(q, k, v, log_alpha, 16)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.stack(expected, dim=2), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(last, state, atol=1e-12, rtol=1e-10)


def rms(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * gain


def recurrent_deltanet(layer, x: torch.Tensor, gated: bool = False) -> torch.Tensor:
    """DeltaNet from its weights, one token at a time: q, k = L2norm(SiLU(x W)), β = sigmoid(x W_β),
    S_t = S_{t-1} - β_t k_t (k_tᵀ S_{t-1}) + β_t k_t v_tᵀ, o_t = S_tᵀ q_t / √D, y = W_O RMSNorm_head(o).
    gated: S_{t-1} first decays by α_t = exp(-exp(A_log)·softplus(x W_α + dt_bias)), and y = W_O (RMSNorm_head(o) ⊙
    SiLU(x W_g))."""
    b, t, _ = x.shape
    h, d = layer.n_heads, layer.head_dim
    w_k, w_v = layer.kv_proj.weight.chunk(2, dim=0)
    state = torch.zeros(b, h, d, d, dtype=x.dtype)
    outputs = []
    for i in range(t):
        xi = x[:, i]
        q, k = (F.silu((xi @ w.T).view(b, h, d)) for w in (layer.q_proj.weight, w_k))
        q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
        v = (xi @ w_v.T).view(b, h, d)
        beta = torch.sigmoid(xi @ layer.beta_proj.weight.T)[..., None, None]  # (B, H, 1, 1)
        if gated:
            dt = F.softplus(xi @ layer.alpha_proj.weight.T + layer.dt_bias)
            state = torch.exp(-layer.a_log.exp() * dt)[..., None, None] * state
        state = state - beta * k[..., None] * (k[..., None] * state).sum(-2, keepdim=True) \
            + beta * k[..., None] * v[..., None, :]
        o = (state * q[..., None]).sum(-2) / d**0.5
        o = rms(o, layer.out_norm.weight).flatten(1)
        if gated:
            o = o * F.silu(xi @ layer.out_gate.weight.T)
        outputs.append(o @ layer.out_proj.weight.T)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("gated", [False, True], ids=["deltanet", "gated_deltanet"])
@pytest.mark.parametrize("chunk_size", [1, 7])
def test_deltanet_equals_the_delta_rule_token_by_token(chunk_size, gated):
    spec = make_spec("gated_deltanet" if gated else "deltanet", "none", attention_knobs={"chunk_size": chunk_size},
                     block_size=40)
    layer, pos = build_layer(spec)
    x = torch.randn(2, 40, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), recurrent_deltanet(layer, x, gated), atol=1e-10, rtol=1e-10)


def recurrent_mamba2(layer, x: torch.Tensor) -> torch.Tensor:
    """Mamba-2's SSD from its weights, one token at a time: [z, x, B, C, dt] = x W_in, dt = softplus(dt + dt_bias),
    per head S_t = exp(-dt_t·exp(A_log)) S_{t-1} + dt_t B_t x_tᵀ (N × P), y_t = S_tᵀ C_t + D x_t,
    out = W_O RMSNorm(y ⊙ SiLU(z))."""
    b, t, _ = x.shape
    h, p, n = layer.n_heads, layer.head_dim, layer.state_size
    state = torch.zeros(b, h, n, p, dtype=x.dtype)
    outputs = []
    for i in range(t):
        z, xs, bs, cs, dt = (x[:, i] @ layer.in_proj.weight.T).split([h * p, h * p, n, n, h], dim=-1)
        xs, dt = xs.view(b, h, p), F.softplus(dt + layer.dt_bias)
        state = torch.exp(-dt * layer.a_log.exp())[..., None, None] * state \
            + dt[..., None, None] * bs[:, None, :, None] * xs[:, :, None, :]
        y = (state * cs[:, None, :, None]).sum(-2) + layer.skip[:, None] * xs  # (B, H, P)
        outputs.append(rms(y.flatten(1) * F.silu(z), layer.norm.weight) @ layer.out_proj.weight.T)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("chunk_size", [1, 16])
def test_mamba2_equals_its_recurrence_token_by_token(chunk_size):
    spec = make_spec("mamba2", "none", attention_knobs={"chunk_size": chunk_size, "state_size": 6}, block_size=40)
    layer, pos = build_layer(spec)
    x = torch.randn(2, 40, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), recurrent_mamba2(layer, x), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("override,line", [
    ("attention=deltanet attention.chunk_size=0", "attention.chunk_size=0 must be an integer >= 1"),
    ("attention=deltanet pos_enc=alibi", "DeltaNet never forms"),
    ("attention=mamba2 attention.state_size=0", "attention.state_size=0 must be an integer >= 1"),
    ("attention=mamba2 pos_enc=rope", "Mamba-2's decays carry position"),
    ("attention.chunk_size=0", "attention.chunk_size=0 must be an integer >= 1"),
    ("attention.gate_rank=0", "attention.gate_rank=0 must be an integer >= 1"),
    ("attention.gate_temperature=0.5", "attention.gate_temperature=0.5 must be >= 1"),
    ("pos_enc=rope", "GLA's per-channel forget gates carry position"),
])
def test_bad_settings_are_named_in_one_line(override, line):
    overrides = override.split() if override.startswith("attention=") else ["attention=gla", override]
    with pytest.raises(SpecError) as failed:
        validate(ablate.compose(["model=tiny", *overrides]))
    assert [p for p in failed.value.problems if line in p]
