"""norm=dyt (Dynamic Tanh, Zhu et al. 2025) and placement=sandwich (sandwich-LN, Ding et al. 2021) against their
equations written out in float64; their parameters; bad knobs refused."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ablate
from ablate.config import model_spec, validate
from ablate.model import count_parameters
from ablate.spec import SpecError

from .helpers import DTYPE, TOL, assert_causal


def _spec(*overrides):
    return model_spec(ablate.compose(["model=tiny", "dropout=off", *overrides]), vocab_size=256)


def _dyt(*overrides):
    spec = _spec("norm=dyt", *overrides)
    norm = spec.norm.build(spec).to(DTYPE)
    for p in norm.parameters():  # not the ones/zeros init: every parameter must matter
        torch.nn.init.normal_(p, std=0.7)
    return norm


def test_dyt_is_gamma_tanh_alpha_x_plus_beta_per_channel():
    norm = _dyt("model.bias=true")
    x = torch.randn(3, 5, 64, dtype=DTYPE) * 4
    alpha, gamma, beta = norm.alpha.item(), norm.weight.tolist(), norm.bias.tolist()
    expected = torch.tensor([[[gamma[c] * math.tanh(alpha * v) + beta[c] for c, v in enumerate(row)]
                              for row in seq] for seq in x.tolist()], dtype=DTYPE)
    torch.testing.assert_close(norm(x), expected, **TOL)


def test_dyt_has_a_scalar_alpha_at_alpha_init_and_beta_only_with_model_bias():
    spec = _spec("norm=dyt", "norm.alpha_init=0.8")
    norm = spec.norm.build(spec)
    assert norm.alpha.shape == () and norm.alpha.item() == pytest.approx(0.8)
    assert torch.equal(norm.weight, torch.ones(64)) and norm.bias is None
    assert sum(p.numel() for p in norm.parameters()) == 1 + 64
    with_bias = _spec("norm=dyt", "model.bias=true")
    assert sum(p.numel() for p in with_bias.norm.build(with_bias).parameters()) == 1 + 2 * 64
    x = torch.randn(4, 64)
    torch.testing.assert_close(norm(x), torch.tanh(0.8 * x))  # at init: tanh(α0·x)


@pytest.mark.parametrize("value", ["0", "-0.5", "inf"])
def test_dyt_alpha_init_must_be_positive(value):
    with pytest.raises(SpecError) as refused:
        validate(ablate.compose(["model=tiny", "norm=dyt", f"norm.alpha_init={value}"]))
    assert refused.value.problems == [f"norm.alpha_init={float(value)} must be a finite number > 0 (the paper: 0.5)"]


def _sandwich_model(norm="layernorm"):
    model = ablate.build_model(ablate.compose(["model=tiny", "dropout=off", "placement=sandwich", f"norm={norm}"]))
    model = model.to(DTYPE).eval()
    for block in model.blocks:  # norms away from their identity init
        for m in (block.norm1, block.norm2, block.norm1_out, block.norm2_out):
            for p in m.parameters():
                torch.nn.init.normal_(p, mean=1.0, std=0.5)
    return model


def test_sandwich_block_is_x_plus_norm_out_of_f_of_norm_in_x():
    model = _sandwich_model()
    block = model.blocks[0]
    x = torch.randn(2, 16, 64, dtype=DTYPE)

    def layer_norm(h, norm):  # (h - mean) / sqrt(var + eps) · g: LayerNorm with model.bias=false
        mean = h.mean(-1, keepdim=True)
        var = ((h - mean) ** 2).mean(-1, keepdim=True)
        return (h - mean) / torch.sqrt(var + norm.eps) * norm.weight

    h = x + layer_norm(block.attn(layer_norm(x, block.norm1), model.pos_enc), block.norm1_out)
    w1, w2 = block.ffn.up.weight, block.ffn.down.weight
    expected = h + layer_norm(F.relu(layer_norm(h, block.norm2) @ w1.T) @ w2.T, block.norm2_out)
    with torch.no_grad():
        torch.testing.assert_close(block(x, model.pos_enc), expected, **TOL)


def test_sandwich_has_a_final_norm_and_two_more_norms_per_layer_than_pre():
    pre = ablate.build_model(ablate.compose(["model=tiny", "placement=pre"]))
    sandwich = ablate.build_model(ablate.compose(["model=tiny", "placement=sandwich"]))
    assert not isinstance(sandwich.final_norm, torch.nn.Identity)
    assert count_parameters(sandwich)["total"] == count_parameters(pre)["total"] + 2 * 2 * 64  # LN gain only
    dyt = ablate.build_model(ablate.compose(["model=tiny", "placement=sandwich", "norm=dyt"]))
    assert count_parameters(dyt)["total"] == count_parameters(pre)["total"] - (2 * 2 + 1) * 64 + (2 * 4 + 1) * 65


@pytest.mark.parametrize("overrides", [["norm=dyt"], ["placement=sandwich"], ["placement=sandwich", "norm=dyt"]])
def test_causal(overrides):
    assert_causal(overrides)
