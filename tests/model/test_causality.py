"""Causality of every allowed attention × pos_enc pair not already covered in test_core_variants.py, with the
sparse variants made actually sparse at model=tiny (BigBird with 16 blocks, so random blocks are drawn)."""

from __future__ import annotations

import itertools

import pytest

from ablate.components import option_names

from .helpers import SPARSE_AT_TINY, allowed_pairs, assert_causal
from .test_core_variants import CORE_PAIRS

PAIRS = [pair for pair in allowed_pairs() if pair not in CORE_PAIRS]


def test_every_pair_is_decided():
    """Each pair is causality-tested (here or in the core tests) or rejected by validation (test_validation.py):
    the only rejected pairs are score biases with linear and differential attention, and RoPE or score biases with
    the gated linear attentions (their gates carry position)."""
    everything = set(itertools.product(option_names("pos_enc"), option_names("attention")))
    rejected = everything - set(PAIRS) - set(CORE_PAIRS)
    gated = {(pos, attention) for pos in ("rope", "relative", "alibi")
             for attention in ("gla", "deltanet", "gated_deltanet", "mamba2")}
    assert rejected == {("relative", "linear"), ("alibi", "linear"), ("relative", "diff"), ("alibi", "diff")} | gated


@pytest.mark.parametrize("pos_enc,attention", PAIRS, ids=[f"pos_enc={p},attention={a}" for p, a in PAIRS])
def test_pair_is_causal(pos_enc, attention):
    assert_causal([f"pos_enc={pos_enc}", f"attention={attention}", *SPARSE_AT_TINY.get(attention, [])])


def test_bigbird_at_tiny_draws_random_blocks():
    """The causality runs above do exercise random blocks."""
    import ablate

    cfg = ablate.compose(["model=tiny", "attention=bigbird", *SPARSE_AT_TINY["bigbird"]])
    layer = ablate.build_model(cfg).blocks[1].attn
    n_global, n_window = 1, 2
    randoms = [
        j
        for i, (index, valid) in enumerate(zip(layer.key_blocks.tolist(), layer.key_block_valid.tolist()))
        for j, ok in zip(index, valid)
        if ok and n_global <= j <= i - n_window
    ]
    assert len(randoms) > 20
