"""model.value_residual (Zhou et al. 2024, arXiv 2410.17897, ResFormer): the first layer's values V_1 reach every later
layer through the forward pass's context and are mixed in as V_n' = ½·V_n + ½·V_1. Each attention option against its
float64 reference with the mixed values; a whole model against a layer-by-layer reference; causality and sensitivity
for every option and placement; no parameters added; validation of options and layer patterns that cannot take it."""

from __future__ import annotations

import math

import pytest
import torch

from hydra.utils import get_class

import ablate
from ablate.components import Attention, ForwardContext, discover
from ablate.config import validate
from ablate.model import count_parameters, flops_per_token
from ablate.model.attention import MultiHeadAttention
from ablate.spec import SpecError

from .helpers import DTYPE, SPARSE_AT_TINY, TOL, assert_causal, build_layer, make_spec, reference_rope
from .test_attention_knobs import knobbed_reference, mla_reference
from .test_diff_attention import diff_reference
from .test_linear_attention import phi, recurrent
from .test_sparse_attention import band

T = 24


def _run(attention, pos_enc, knobs, value_shape):
    """Layer 1 of `attention` run with a context holding random first-layer values of `value_shape` (heads, dim)."""
    spec = make_spec(attention, pos_enc, attention_knobs=knobs, n_layers=2, block_size=64)
    spec = type(spec)(**{**vars(spec), "value_residual": True})
    layer, pos = build_layer(spec, layer=1)
    x = torch.randn(2, T, spec.d_model, dtype=DTYPE)
    first = torch.randn(2, value_shape[0], T, value_shape[1], dtype=DTYPE)
    return layer, pos, x, first, layer(x, pos, ForwardContext(first_values=first))


CAUSAL = torch.ones(T, T, dtype=torch.bool).tril()
GQA_FAMILY = [("mha", {}, 4, CAUSAL), ("mqa", {}, 1, CAUSAL), ("gqa", {"n_kv_heads": 2}, 2, CAUSAL),
              ("local", {"window": 5}, 4, band(T, 5))]


@pytest.mark.parametrize("attention,knobs,kv_heads,allowed", GQA_FAMILY, ids=[c[0] for c in GQA_FAMILY])
def test_gqa_family_attends_with_mixed_values(attention, knobs, kv_heads, allowed):
    layer, pos, x, first, y = _run(attention, "rope", knobs, (kv_heads, 8))
    torch.testing.assert_close(y, knobbed_reference(layer, pos, x, allowed, False, False, first), **TOL)


def test_mla_attends_with_mixed_values():
    layer, pos, x, first, y = _run("mla", "rope", {"v_head_dim": 10}, (4, 10))
    torch.testing.assert_close(y, mla_reference(layer, pos, x, False, False, first), **TOL)


def test_diff_attends_with_mixed_values():
    layer, pos, x, first, y = _run("diff", "rope", {}, (2, 16))
    torch.testing.assert_close(y, diff_reference(layer, pos, x, 2, first_values=first), **TOL)


def test_linear_attends_with_mixed_values():
    layer, pos, x, first, y = _run("linear", "none", {"chunk_size": 8}, (4, 8))

    def split(z):  # (B, T, H·D) -> (B, H, T, D)
        return z.view(*x.shape[:2], 4, -1).transpose(1, 2)

    w_k, w_v = layer.kv_proj.weight.chunk(2, dim=0)
    v = 0.5 * split(x @ w_v.T) + 0.5 * first
    expected = recurrent(phi(split(x @ layer.q_proj.weight.T)), phi(split(x @ w_k.T)), v)
    torch.testing.assert_close(y, expected.transpose(1, 2).flatten(2) @ layer.out_proj.weight.T, **TOL)


def test_the_first_layer_keeps_its_values_and_attends_unmixed():
    spec = make_spec("mha", "rope", n_layers=2)
    plain, pos = build_layer(spec)
    mixing = spec.attention.build(type(spec)(**{**vars(spec), "value_residual": True}), 0).to(DTYPE)
    mixing.load_state_dict(plain.state_dict())
    x = torch.randn(2, T, spec.d_model, dtype=DTYPE)
    context = ForwardContext()
    torch.testing.assert_close(mixing(x, pos, context), plain(x, pos), atol=0, rtol=0)
    w_v = plain.kv_proj.weight.chunk(2, dim=0)[1]
    torch.testing.assert_close(context.first_values, (x @ w_v.T).view(2, T, 4, 8).transpose(1, 2), **TOL)


def reference_model(model, ids):
    """Pre-norm MHA model (no positions), written layer by layer: V_1 from layer 0, V_n' = ½V_n + ½V_1 after it."""
    x = model.token_embedding.weight[ids]
    t, first = ids.shape[1], None
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    for block in model.blocks:
        attn, h = block.attn, block.norm1(x)
        heads, d = attn.n_heads, attn.head_dim
        w_k, w_v = attn.kv_proj.weight.chunk(2, dim=0)
        q, k, v = ((h @ w.T).view(*ids.shape, heads, d).transpose(1, 2) for w in (attn.q_proj.weight, w_k, w_v))
        if first is None:
            first = v
        else:
            v = 0.5 * v + 0.5 * first
        scores = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~causal, float("-inf"))
        x = x + (scores.softmax(-1) @ v).transpose(1, 2).flatten(2) @ attn.out_proj.weight.T
        x = x + block.ffn(block.norm2(x))
    return model.head(model.final_norm(x))


def _model(*overrides):
    return ablate.build_model(ablate.compose(["model=tiny", "dropout=off", *overrides])).to(DTYPE).eval()


def test_model_mixes_layer_0_values_into_every_later_layer():
    model = _model("attention=mha", "pos_enc=none", "model.n_layers=3", "model.value_residual=true")
    ids = torch.randint(0, 256, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference_model(model, ids), **TOL)


# every option that shares values (mamba2 has none: validation refuses it), each with RoPE where it takes RoPE
def attention_class(name: str) -> type:
    return get_class(discover("attention")[name].target)


VALUE_RESIDUAL = [name for name in discover("attention")
                  if attention_class(name).value_heads.__func__ is not Attention.value_heads.__func__]


def pos_enc_for(attention: str) -> str:
    return "pos_enc=rope" if "rotary" in attention_class(attention).supports else "pos_enc=none"


@pytest.mark.parametrize("attention", VALUE_RESIDUAL)
def test_every_option_is_causal_with_value_residual(attention):
    assert_causal([f"attention={attention}", pos_enc_for(attention), "model.value_residual=true",
                   *SPARSE_AT_TINY.get(attention, [])])


@pytest.mark.parametrize("placement", sorted(discover("placement")))
@pytest.mark.parametrize("attention", VALUE_RESIDUAL)
def test_value_residual_changes_the_model_but_not_its_parameters(attention, placement):
    """Every placement hands the context to its attention (the same weights give other logits), and the mix adds no
    parameter; its FLOPs (one multiply-add per value) are below what flops_per_token counts."""
    overrides = [f"attention={attention}", f"placement={placement}", pos_enc_for(attention),
                 *SPARSE_AT_TINY.get(attention, [])]
    torch.manual_seed(0)
    plain = _model(*overrides)
    torch.manual_seed(0)
    mixing = _model(*overrides, "model.value_residual=true")
    assert count_parameters(mixing) == count_parameters(plain)
    assert flops_per_token(mixing) == flops_per_token(plain)
    ids = torch.randint(0, 256, (1, 64))
    with torch.no_grad():
        assert (mixing(ids) - plain(ids)).abs().max() > 1e-6


class ValuelessAttention(MultiHeadAttention):
    """A test-only attention that declares no values to share."""

    value_heads = classmethod(Attention.value_heads.__func__)
    unsupported_reason = {"value_residual": "its values are not kept"}


@pytest.mark.parametrize("overrides,message", [
    (["attention._target_=tests.model.test_value_residual.ValuelessAttention"],
     "model.value_residual=true cannot be used with attention=mha: its values are not kept; set "
     "model.value_residual=false or choose another attention"),
    (["model.attention_pattern=[mha,gqa]"],
     "model.value_residual=true needs every layer's values shaped like layer 0's (attention=mha: 4 heads of 16), "
     "but layer 1 (attention=gqa) has 2 heads of 16; use attentions with the same value heads"),
])
def test_options_that_cannot_take_it_are_refused_in_one_line(overrides, message):
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["model=tiny", "model.value_residual=true", *overrides]))
    assert error.value.problems == [message]


def test_a_pattern_of_same_shaped_values_is_accepted():
    spec, _ = validate(ablate.compose(["model=tiny", "model.value_residual=true",
                                       "model.attention_pattern=[local:window:8,mha]"]))
    assert spec.value_residual and [c.name for c in spec.attention_pattern] == ["local", "mha"]
