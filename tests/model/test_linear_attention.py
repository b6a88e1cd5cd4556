"""Linear attention: the chunked computation == the naive quadratic formula == the recurrent (RNN) form, in
float64, with and without RoPE's rotated numerator; and the layer == the formula on its own projections."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ablate.model.attention_linear import causal_linear_attention

from .helpers import DTYPE, TOL, build_layer, make_spec, mha_projections, reference_rope

EPS = 1e-6


def phi(x):
    return F.elu(x) + 1


def quadratic(fq, fk, v, rq=None, rk=None):
    """Katharopoulos et al. eq. 6 with a causal mask, as a full T×T matrix (numerator features rq, rk if given)."""
    rq, rk = (fq, fk) if rq is None else (rq, rk)
    causal = torch.ones(fq.shape[-2], fq.shape[-2], dtype=torch.bool).tril()
    num = (rq @ rk.transpose(-1, -2)).masked_fill(~causal, 0) @ v
    den = (fq @ fk.transpose(-1, -2)).masked_fill(~causal, 0).sum(-1, keepdim=True)
    return num / (den + EPS)


def recurrent(fq, fk, v, rq=None, rk=None):
    """The RNN form (eqs. 16-20): S_i = S_{i-1} + k_i v_iᵀ, z_i = z_{i-1} + k_i, y_i = q_i S_i / q_i z_i."""
    rq, rk = (fq, fk) if rq is None else (rq, rk)
    b, h, t, d = fq.shape
    state = torch.zeros(b, h, d, v.shape[-1], dtype=fq.dtype)
    norm = torch.zeros(b, h, d, dtype=fq.dtype)
    out = []
    for i in range(t):
        state = state + rk[:, :, i, :, None] * v[:, :, i, None, :]
        norm = norm + fk[:, :, i]
        num = (rq[:, :, i, :, None] * state).sum(-2)
        den = (fq[:, :, i] * norm).sum(-1, keepdim=True)
        out.append(num / (den + EPS))
    return torch.stack(out, dim=2)


@pytest.mark.parametrize("rotary", [False, True], ids=["plain", "rope-numerator"])
@pytest.mark.parametrize("t,chunk", [(48, 16), (50, 16), (10, 64), (33, 1)], ids=lambda v: str(v))
def test_chunked_equals_quadratic_equals_recurrent(t, chunk, rotary):
    fq, fk = phi(torch.randn(2, 3, t, 8, dtype=DTYPE)), phi(torch.randn(2, 3, t, 8, dtype=DTYPE))
    v = torch.randn(2, 3, t, 5, dtype=DTYPE)
    rq, rk = (reference_rope(fq), reference_rope(fk)) if rotary else (None, None)
    chunked = causal_linear_attention(fq, fk, v, chunk, rq, rk, eps=EPS)
    torch.testing.assert_close(chunked, quadratic(fq, fk, v, rq, rk), **TOL)
    torch.testing.assert_close(chunked, recurrent(fq, fk, v, rq, rk), **TOL)


@pytest.mark.parametrize("pos_enc", ["none", "learned", "rope"])
def test_layer_is_linear_attention_on_its_projections(pos_enc):
    spec = make_spec("linear", pos_enc, attention_knobs={"chunk_size": 8})
    layer, pos = build_layer(spec)
    x = torch.randn(2, 30, spec.d_model, dtype=DTYPE)
    q, k, v = mha_projections(layer, x)
    fq, fk = phi(q), phi(k)
    rq, rk = (reference_rope(fq), reference_rope(fk)) if pos_enc == "rope" else (None, None)
    expected = recurrent(fq, fk, v, rq, rk).transpose(1, 2).flatten(2) @ layer.out_proj.weight.T
    torch.testing.assert_close(layer(x, pos), expected, **TOL)


def test_chunk_size_does_not_change_the_result():
    spec = make_spec("linear", "rope", attention_knobs={"chunk_size": 4})
    layer, pos = build_layer(spec)
    x = torch.randn(1, 37, spec.d_model, dtype=DTYPE)
    reference = layer(x, pos)
    for chunk in (1, 7, 64):
        layer.chunk_size = chunk
        torch.testing.assert_close(layer(x, pos), reference, **TOL)
