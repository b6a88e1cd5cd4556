"""local and BigBird against dense softmax attention with their masks written out here, in float64; BigBird's random
blocks; the flex-attention path's masks; and that training never keeps a T×T tensor."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ablate.model.attention_sparse import bigbird_layout

from .helpers import DTYPE, TOL, build_layer, make_spec, mha_projections, reference_rope, reference_softmax_attention

POS_ENCS = ["none", "rope", "alibi", "relative"]


def dense_reference(layer, pos, x, allowed):
    """Softmax attention over the allowed (query, key) pairs, with the same projections, rotation and bias."""
    t = x.shape[1]
    q, k, v = mha_projections(layer, x)
    if pos.acts_on == "rotary":
        q, k = reference_rope(q), reference_rope(k)
    bias = pos.score_bias(0, t, x.device)  # the encodings' own values are tested in test_pos_enc.py
    y = reference_softmax_attention(q, k, v, allowed, bias)
    return y.transpose(1, 2).flatten(2) @ layer.out_proj.weight.T


def band(t: int, window: int) -> torch.Tensor:
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    return (j <= i) & (i - j < window)


# (window, T): window below the minimum chunk (chunk 64), above it (chunk = window), T not a multiple of the chunk,
# T within one chunk, and T <= window (dense)
LOCAL_CASES = [(5, 150), (80, 200), (16, 64), (9, 40), (64, 50)]


@pytest.mark.parametrize("pos_enc", POS_ENCS)
@pytest.mark.parametrize("window,t", LOCAL_CASES, ids=[f"window={w},T={t}" for w, t in LOCAL_CASES])
def test_local_equals_dense_with_band_mask(window, t, pos_enc):
    spec = make_spec("local", pos_enc, attention_knobs={"window": window}, block_size=256)
    layer, pos = build_layer(spec)
    x = torch.randn(2, t, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), dense_reference(layer, pos, x, band(t, window)), **TOL)


def bigbird_dense_mask(t, block, n_global, n_window, random_blocks) -> torch.Tensor:
    """Token mask from BigBird's rules: key block j is visible to query block i if j is global (j < n_global), in
    the window (i - n_window < j <= i), or one of i's random blocks; then causal per token."""
    n = -(-t // block)
    allowed_blocks = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(i + 1):
            allowed_blocks[i, j] = j < n_global or i - n_window < j or j in random_blocks[i]
    token_blocks = torch.arange(t) // block
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    return allowed_blocks[token_blocks[:, None], token_blocks[None, :]] & causal


def random_blocks_of(layer, n_global, n_window):
    """Per query block, the blocks the layer attends that are neither global nor in its window."""
    out = []
    for i, (index, valid) in enumerate(zip(layer.key_blocks.tolist(), layer.key_block_valid.tolist())):
        out.append({j for j, ok in zip(index, valid) if ok and j >= n_global and j <= i - n_window})
    return out


BIGBIRD_CASES = [  # block, global, window, random, T
    (4, 1, 2, 2, 64),
    (4, 2, 3, 1, 61),  # T not a multiple of the block
    (8, 0, 1, 3, 80),  # no global blocks, window = own block only
    (5, 1, 2, 0, 60),  # no random blocks
]


@pytest.mark.parametrize("pos_enc", POS_ENCS)
@pytest.mark.parametrize("case", BIGBIRD_CASES, ids=[f"b{c[0]}-g{c[1]}-w{c[2]}-r{c[3]}-T{c[4]}" for c in BIGBIRD_CASES])
def test_bigbird_equals_dense_with_block_mask(case, pos_enc):
    block, n_global, n_window, n_random, t = case
    knobs = dict(block_size=block, num_global_blocks=n_global, num_window_blocks=n_window, num_random_blocks=n_random)
    spec = make_spec("bigbird", pos_enc, attention_knobs=knobs, block_size=80)
    layer, pos = build_layer(spec)
    randoms = random_blocks_of(layer, n_global, n_window)
    mask = bigbird_dense_mask(t, block, n_global, n_window, randoms)
    x = torch.randn(2, t, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), dense_reference(layer, pos, x, mask), **TOL)


def test_bigbird_random_blocks_are_earlier_blocks_fixed_by_seed_and_layer():
    knobs = dict(block_size=4, num_global_blocks=1, num_window_blocks=2, num_random_blocks=3)
    def bigbird(seed, layer):
        return build_layer(make_spec("bigbird", attention_knobs=knobs, block_size=96, seed=seed), layer)[0]

    layers = {(seed, layer): bigbird(seed, layer) for seed in (0, 1) for layer in (0, 1)}
    for (seed, index), layer in layers.items():
        randoms = random_blocks_of(layer, 1, 2)
        for i, chosen in enumerate(randoms):
            assert all(1 <= j <= i - 2 for j in chosen)  # neither global nor window nor future
            assert len(chosen) == min(3, max(0, i - 2))  # as many as there are candidates, up to 3
        # nothing else is listed: exactly globals + window + randoms, each once
        for i in range(len(randoms)):
            listed = layer.key_blocks[i][layer.key_block_valid[i]].tolist()
            assert sorted(listed) == sorted({0} & set(range(i + 1)) | {j for j in (i - 1, i) if j >= 1} | randoms[i])
        assert torch.equal(bigbird(seed, index).key_blocks, layer.key_blocks)
    assert not torch.equal(layers[0, 0].key_blocks, layers[0, 1].key_blocks)
    assert not torch.equal(layers[0, 0].key_blocks, layers[1, 0].key_blocks)


def test_bigbird_layout_shorter_sequence_uses_leading_rows():
    rng = np.random.default_rng([0, 0])
    index, valid = bigbird_layout(6, 1, 2, 2, rng)
    assert index.shape == (6, 5)
    assert valid[0].tolist() == [True, False, False, False, False]  # block 0: only itself (global)
    assert valid[1].tolist() == [True, True, False, False, False]  # block 1: global 0, window {1}


def saved_numels(layer, pos, x) -> list[int]:
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        layer(x, pos).sum().backward()
    return sizes


EFFICIENT = [
    ("local", {"window": 16}, "none"),
    ("local", {"window": 16}, "alibi"),
    ("bigbird", {"block_size": 16}, "none"),
    ("bigbird", {"block_size": 16}, "alibi"),
    ("linear", {"chunk_size": 32}, "none"),
    ("linear", {"chunk_size": 32}, "rope"),
]


@pytest.mark.parametrize("attention,knobs,pos_enc", EFFICIENT, ids=[f"{a}-{p}" for a, _, p in EFFICIENT])
def test_training_keeps_no_t_by_t_tensor(attention, knobs, pos_enc):
    largest = {}
    for t in (512, 1024):
        spec = make_spec(attention, pos_enc, attention_knobs=knobs, d_model=16, n_heads=2, block_size=t)
        layer, pos = build_layer(spec)
        layer.train()
        x = torch.randn(1, t, 16, dtype=DTYPE, requires_grad=True)
        largest[t] = max(saved_numels(layer, pos, x))
    assert largest[1024] < 1024 * 1024 / 4  # dense would keep H·T·T = 2·T·T here
    assert largest[1024] <= 2.25 * largest[512]  # ~linear in T (quadratic would be 4x; the first chunk is special)

    # the check itself can see a T×T tensor: the dense path with a bias keeps its (H, T, T) mask
    dense, dense_pos = build_layer(make_spec("mha", "alibi", d_model=16, n_heads=2, block_size=1024))
    assert max(saved_numels(dense, dense_pos, x)) >= 1024 * 1024


@pytest.mark.parametrize(
    "attention,knobs",
    [("local", {"window": 20}), ("bigbird", {"block_size": 8, "num_global_blocks": 1, "num_window_blocks": 2})],
    ids=["local", "bigbird"],
)
def test_flex_attention_path_masks_match_dense(attention, knobs):
    """The CUDA path's masks, run through uncompiled flex attention on CPU (forward only: flex has no CPU backward)."""
    spec = make_spec(attention, "none", attention_knobs=knobs, block_size=128)
    layer, pos = build_layer(spec)
    x = torch.randn(1, 128, spec.d_model, dtype=DTYPE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()"
        q, k, v = mha_projections(layer, x)
        flex = layer.flex_attend(q, k, v, pos).transpose(1, 2).flatten(2) @ layer.out_proj.weight.T
        torch.testing.assert_close(flex, layer(x, pos), atol=1e-9, rtol=1e-9)
