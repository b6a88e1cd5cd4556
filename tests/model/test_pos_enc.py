"""Positional encodings against hand-computed values: T5 buckets, ALiBi slopes, RoPE's offset-only scores, and the
bias hooks' shapes and per-layer tables."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.model.pos_enc import ALiBi, RelativePositionBias, alibi_slopes, apply_rope, t5_relative_buckets

from .helpers import DTYPE, make_spec, reference_rope

# Causal T5 buckets with num_buckets=32, max_distance=128: distances 0..15 exact; then
# 16 + floor(log(n/16) / log(128/16) * 16), capped at 31. By hand:
#   n=16: 16 + floor(0)                          = 16
#   n=20: 16 + floor(ln(1.25)/ln(8) * 16 = 1.717) = 17
#   n=32: 16 + floor(ln(2)/ln(8) * 16 = 5.333)    = 21
#   n=50: 16 + floor(ln(3.125)/ln(8) * 16 = 8.77) = 24
#   n=64: 16 + floor(ln(4)/ln(8) * 16 = 10.667)   = 26
#   n=100: 16 + floor(ln(6.25)/ln(8) * 16 = 14.10) = 30
#   n=127: 16 + floor(ln(7.9375)/ln(8) * 16 = 15.94) = 31;  n=128 -> 32, capped 31;  n=1000 -> 31
T5_BUCKETS = {0: 0, 1: 1, 7: 7, 15: 15, 16: 16, 20: 17, 32: 21, 50: 24, 64: 26, 100: 30, 127: 31, 128: 31, 1000: 31}


def test_t5_buckets_match_hand_computed_values():
    offsets = torch.tensor(list(T5_BUCKETS))
    assert t5_relative_buckets(offsets, 32, 128).tolist() == list(T5_BUCKETS.values())
    # the future (negative offsets, masked anyway) maps to bucket 0, like distance 0 in T5's causal variant
    assert t5_relative_buckets(torch.tensor([-1, -50]), 32, 128).tolist() == [0, 0]


def test_t5_buckets_small_table():
    # num_buckets=8, max_distance=20: exact 0..3, then 4 + floor(ln(n/4)/ln(5) * 4)
    # n=4 -> 4, n=6 -> 4 + floor(1.007) = 5, n=9 -> 4 + floor(2.015) = 6, n=19 -> 4 + floor(3.872) = 7, n=30 -> 7
    offsets = torch.tensor([0, 3, 4, 6, 9, 19, 30])
    assert t5_relative_buckets(offsets, 8, 20).tolist() == [0, 3, 4, 5, 6, 7, 7]


def test_relative_bias_reads_its_table_per_layer_or_shared():
    spec = make_spec(pos_enc="relative", n_layers=3, pos_enc_knobs={"shared": False})
    per_layer = RelativePositionBias(spec, shared=False)
    assert len(per_layer.tables) == 3
    bias = [per_layer.score_bias(layer, 10, torch.device("cpu")) for layer in range(3)]
    assert bias[0].shape == (spec.n_heads, 10, 10)
    assert not torch.equal(bias[0], bias[1])
    # entry (h, i, j) is table[bucket(i - j), h]
    table = per_layer.tables[2].weight
    assert torch.equal(bias[2][1, 9, 2], table[7, 1])
    assert torch.equal(bias[2][3, 5, 5], table[0, 3])

    shared = RelativePositionBias(spec, shared=True)
    assert len(shared.tables) == 1
    assert torch.equal(shared.score_bias(0, 10, "cpu"), shared.score_bias(2, 10, "cpu"))


def paper_slopes(n: int) -> list[float]:
    """ALiBi's rule, restated: for n a power of 2, 2^(-8/n), 2^(-16/n), ...; else the 2^floor(log2 n) slopes, then
    the odd-numbered (1st, 3rd, ...) slopes for 2·2^floor(log2 n) heads."""
    p = 2 ** math.floor(math.log2(n))
    base = [2 ** (-8 * (i + 1) / p) for i in range(p)]
    return base + [2 ** (-8 * (i + 1) / (2 * p)) for i in range(0, 2 * p, 2)][: n - p]


def test_alibi_slopes_for_8_and_12_heads():
    assert alibi_slopes(8).tolist() == pytest.approx([2**-1, 2**-2, 2**-3, 2**-4, 2**-5, 2**-6, 2**-7, 2**-8])
    twelve = [2**-1, 2**-2, 2**-3, 2**-4, 2**-5, 2**-6, 2**-7, 2**-8, 2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    assert alibi_slopes(12).tolist() == pytest.approx(twelve)
    for n in (1, 2, 3, 5, 6, 16, 20):
        assert alibi_slopes(n).tolist() == pytest.approx(paper_slopes(n))


def test_alibi_bias_is_minus_slope_times_distance():
    alibi = ALiBi(make_spec(pos_enc="alibi", n_heads=4))
    bias = alibi.score_bias(0, 6, torch.device("cpu"))  # (H, T, T)
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(6):
            for j in range(i + 1):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h].item() * (i - j))


def test_rope_matches_its_written_out_definition():
    x = torch.randn(2, 3, 9, 8, dtype=DTYPE)
    torch.testing.assert_close(apply_rope(x, 10000.0), reference_rope(x), atol=1e-12, rtol=0)


def test_rope_scores_depend_only_on_the_offset():
    d, t = 16, 24
    q, k = torch.randn(d, dtype=DTYPE), torch.randn(d, dtype=DTYPE)
    # the same query and key vectors at every position: only positions differ
    rq = apply_rope(q.expand(1, 1, t, d), 10000.0)[0, 0]
    rk = apply_rope(k.expand(1, 1, t, d), 10000.0)[0, 0]
    scores = rq @ rk.T  # (T, T): scores[m, n] = <R_m q, R_n k>
    for offset in range(-t + 1, t):
        diagonal = torch.diagonal(scores, offset=offset)
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), atol=1e-12, rtol=0)
    assert not torch.allclose(torch.diagonal(scores, 0)[0], torch.diagonal(scores, 1)[0])


def test_rope_keeps_half_precision_dtype_and_float64_precision():
    x = torch.randn(1, 1, 5, 4)
    assert apply_rope(x.half(), 10000.0).dtype == torch.float16
    torch.testing.assert_close(apply_rope(x.double(), 10000.0), reference_rope(x.double()), atol=1e-14, rtol=0)
