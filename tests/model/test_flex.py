"""The CUDA attention path through flex attention (`ablate.model.flex`): the option's mask, an offset score bias
(ALiBi, T5 relative) and attention dropout inside the kernel, against naive float64 softmax attention.

Flex has no CPU backward, so these run the forward on CPU (uncompiled flex in float64; one compiled check in
float32), with the layer's flex path forced on for the CPU. Gradients through flex (and a learned relative table's
captured-buffer gradient) run only on CUDA, which no session of this project had."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from ablate.model.flex import FlexAttention, causal_mask_mod, compiled_flex_attention, dropout_keep

from .helpers import DTYPE, build_layer, make_spec, mha_projections

T = 64
CASES = [  # (attention, knobs): the dense family and the sparse patterns, which all take the flex path on CUDA
    ("mha", {}),
    ("gqa", {"n_kv_heads": 2}),
    ("local", {"window": 20}),
    ("bigbird", {"block_size": 8, "num_global_blocks": 1, "num_window_blocks": 2, "num_random_blocks": 2}),
]


def grid(b: int, h: int, t: int):
    return torch.meshgrid(torch.arange(b), torch.arange(h), torch.arange(t), torch.arange(t), indexing="ij")


def naive_attention(q, k, v, allowed, bias, keep, p):
    """softmax(q kᵀ/√D + bias, masked) per head in float64, then dropout's keep mask / (1 - p) on the weights."""
    k, v = (x.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for x in (k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    if keep is not None:
        weights = weights * keep / (1 - p)
    return weights @ v


FLEX_CASES = [  # the dense family takes flex for a score bias only (without one SDPA's fused kernels are faster)
    (attention, knobs, pos_enc) for attention, knobs in CASES for pos_enc in ("none", "alibi", "relative")
    if pos_enc != "none" or attention in ("local", "bigbird")]


@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("attention,knobs,pos_enc", FLEX_CASES, ids=[f"{c[0]}-{c[2]}" for c in FLEX_CASES])
def test_the_flex_path_equals_naive_attention_with_bias_and_dropout(attention, knobs, pos_enc, p):
    spec = make_spec(attention, pos_enc, attention_knobs=knobs, block_size=T)
    layer, pos = build_layer(spec)
    layer.flex.devices.add("cpu")
    layer.dropout_p = p  # dropout.attention
    layer.train()  # attention dropout is on in training only
    x = torch.randn(2, T, spec.d_model, dtype=DTYPE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()"
        torch.manual_seed(7)
        y = layer(x, pos)
        torch.manual_seed(7)
        seed = torch.randint(2**31 - 1, (), dtype=torch.int64)  # the draw flex's dropout makes
        q, k, v = mha_projections(layer, x)
    positions = torch.arange(T)
    allowed = layer.visible(positions[:, None], positions[None, :])
    bias = pos.score_bias(0, T, x.device) if pos_enc != "none" else None
    if pos_enc == "alibi":  # ALiBi written out: head h adds -slope_h · (i - j)
        bias = -pos.slopes[:, None, None] * (positions[:, None] - positions[None, :]).clamp(min=0)
    keep = dropout_keep(seed, *grid(2, spec.n_heads, T), int(p * 2**32)) if p else None
    expected = naive_attention(q, k, v, allowed, bias, keep, p).transpose(1, 2).flatten(2) @ layer.out_proj.weight.T
    torch.testing.assert_close(y, expected, atol=1e-10, rtol=1e-10)


def test_the_cpu_keeps_its_own_paths_unless_told():
    layer, pos = build_layer(make_spec("local", "alibi", attention_knobs={"window": 20}, block_size=T))
    x = torch.randn(1, T, layer.n_heads * layer.head_dim, dtype=DTYPE)
    assert not layer.flex.applies(x)
    with torch.no_grad():
        blockwise = layer(x, pos)
        layer.flex.devices.add("cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.testing.assert_close(layer(x, pos), blockwise, atol=1e-10, rtol=1e-10)


def test_dropout_keeps_each_pair_with_probability_one_minus_p_independently():
    b, h, q, k = grid(4, 4, 64)
    for p in (0.1, 0.5):
        keep = dropout_keep(torch.tensor(123), b, h, q, k, int(p * 2**32)).double()
        n = keep.numel()
        assert abs(keep.mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)  # within 5 sigma
        # neighbours (next key, next query, next head) are uncorrelated
        for shifted, base in ((keep[..., 1:], keep[..., :-1]), (keep[:, :, 1:], keep[:, :, :-1]),
                              (keep[:, 1:], keep[:, :-1])):
            assert abs(torch.corrcoef(torch.stack([shifted.flatten(), base.flatten()]))[0, 1].item()) < 0.02
    first = dropout_keep(torch.tensor(1), b, h, q, k, 2**31)
    assert not torch.equal(first, dropout_keep(torch.tensor(2), b, h, q, k, 2**31))  # a new draw per call
    assert torch.equal(first, dropout_keep(torch.tensor(1), b, h, q, k, 2**31))  # backward recomputes the same


def test_compiled_flex_equals_eager_flex_on_cpu():
    """What CUDA runs is the compiled kernel: compiled on CPU (float32, forward) it equals the eager math."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 128, 16) for _ in range(3))
    slopes = torch.rand(4)
    pos = type("Alibi", (), {"acts_on": "bias", "offset_bias": lambda self, layer, offset: -slopes[:, None] * offset})()
    eager, compiled = FlexAttention(), FlexAttention()
    compiled.compile()
    assert compiled.kernel is compiled_flex_attention()
    for p in (0.2,):  # the score_mod with every part: offset bias, dropout, keys twice
        torch.manual_seed(3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = eager(q, k, v, causal_mask_mod, pos, 0, p)
        torch.manual_seed(3)
        torch.testing.assert_close(compiled(q, k, v, causal_mask_mod, pos, 0, p), expected, atol=2e-5, rtol=1e-4)
