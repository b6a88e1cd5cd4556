"""Decoding with a cache (TransformerLM.decode) equals recomputing the whole sequence, for every attention option
found in conf/ (a new option is tested here without new test code), with the positional encodings and knobs that
change what a cache must hold; and each cache holds what `cache_numel` declares."""

from __future__ import annotations

import pytest
import torch

import ablate
from ablate.components import Attention, DecodeCache, discover
from ablate.config import validate
from ablate.model import TransformerLM
from ablate.model.attention import MultiHeadAttention
from ablate.spec import SpecError
from ablate.training.sample import generate

# small windows and blocks, so that the tiny model's 64 tokens reach past them (else they equal dense attention)
SPARSE = {"local": ["attention.window=8"], "bigbird": ["attention.block_size=8"]}
ATTENTION = sorted(discover("attention"))
POS_ENC = sorted(discover("pos_enc"))
CASES = sorted({(a, p, ()) for a in ATTENTION for p in ("learned", "rope", "alibi")}
               | {("mha", p, ()) for p in POS_ENC}
               | {(a, "rope", (k,)) for a in ("gqa", "mla", "diff") for k in ("attention.qk_norm=true",
                                                                               "attention.gate=true")}
               | {(a, "rope", ("model.value_residual=true",)) for a in ("mha", "gqa", "mla", "local", "diff")}
               | {("mla", "alibi", ("model.bias=true",)), ("gqa", "relative", ("pos_enc.shared=false",)),
                  ("mha", "rope", ("model.attention_pattern=[local:window:8,mha]",)),
                  ("mha", "none", ("model.pos_enc_pattern=[rope,none]",)),
                  ("mha", "learned", ("model.logit_softcap=3",))})


def tiny_model(attention: str, pos_enc: str, knobs: tuple[str, ...] = ()) -> TransformerLM:
    overrides = ["model=tiny", "dropout=off", f"attention={attention}", f"pos_enc={pos_enc}",
                 *SPARSE.get(attention, []), *knobs]
    try:
        spec, _ = validate(ablate.compose(overrides))
    except SpecError as e:  # an option refuses some encodings or knobs, and says so
        pytest.skip(e.problems[0])
    torch.manual_seed(0)
    model = TransformerLM(spec).double().eval()
    for p in model.parameters():  # larger than the init, so that every weight moves the logits
        torch.nn.init.normal_(p, std=0.2)
    return model


@pytest.mark.parametrize("attention,pos_enc,knobs", CASES, ids=[f"{a}-{p}{'-' + '-'.join(k) if k else ''}"
                                                                 for a, p, k in CASES])
def test_cached_decoding_equals_the_full_forward(attention, pos_enc, knobs):
    model = tiny_model(attention, pos_enc, knobs)
    t = model.spec.block_size
    ids = torch.randint(0, model.spec.vocab_size, (2, t), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        cache, pieces, at = DecodeCache(), [], 0
        for length in [5, 1, 3, *[1] * 10, t - 19]:  # a prompt, single steps, a chunk, and the rest at once
            pieces.append(model.decode(ids[:, at : at + length], cache))
            at += length
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-10, rtol=0)
    assert cache.start == t
    assert cache.numel_per_sequence() == model.cache_numel(t), "cache_numel declares what the cache holds"


@pytest.mark.parametrize("attention", ATTENTION)
def test_cached_greedy_generation_gives_the_tokens_of_full_recomputation(attention):
    model = tiny_model(attention, "rope" if attention != "bigbird" else "learned")
    prompt, n = [3, 14, 15, 9, 2], 80  # past block_size (64): the context is cropped from there on
    cached = generate(model, prompt, n, temperature=0.0, top_p=1.0, seed=0)
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n):
            next_id = model(ids[:, -model.spec.block_size:])[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    assert cached == ids[0].tolist()


class InputCachingAttention(MultiHeadAttention):
    """A user's option without a decode() of its own: the contract's default keeps its inputs."""

    decode = Attention.decode


def test_an_option_without_decode_still_decodes_exactly_and_counts_what_it_keeps():
    model = tiny_model("mha", "rope")
    for block in model.blocks:
        block.attn.__class__ = InputCachingAttention
    ids = torch.randint(0, model.spec.vocab_size, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full, cache = model(ids), DecodeCache()
        cached = torch.cat([model.decode(ids[:, :7], cache), *(model.decode(ids[:, i : i + 1], cache)
                                                                for i in range(7, 20))], dim=1)
    torch.testing.assert_close(cached, full, atol=1e-10, rtol=0)
    assert model.cache_numel(20) == cache.numel_per_sequence() == 20 * model.spec.d_model * model.spec.n_layers


def test_decoding_past_the_block_size_is_refused():
    model = tiny_model("mha", "learned")
    cache = DecodeCache()
    model.decode(torch.zeros(1, model.spec.block_size, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="exceeds model.block_size"):
        model.decode(torch.zeros(1, 1, dtype=torch.long), cache)


def test_the_cache_sizes_are_the_papers():
    """Per token and layer: MHA 2·d_model, GQA 2·n_kv·head_dim, MQA 2·head_dim, MLA kv_lora_rank + rope dim,
    local a window, linear attention a fixed H·D·(D+1) state (tiny: d_model 64, 4 heads of 16)."""
    per_layer = {name: tiny_model(name, "learned").blocks[0].attn for name in ("mha", "gqa", "mqa", "mla",
                                                                                 "local", "linear")}
    assert per_layer["mha"].cache_numel(64) == 64 * 2 * 64
    assert per_layer["gqa"].cache_numel(64) == 64 * 2 * 2 * 16
    assert per_layer["mqa"].cache_numel(64) == 64 * 2 * 16
    assert per_layer["mla"].cache_numel(64) == 64 * (16 + 8)  # d_model/4 latent, half a head_dim rope key
    assert per_layer["local"].cache_numel(64) == 7 * 2 * 64  # window 8: the 7 tokens before the next query
    assert per_layer["linear"].cache_numel(64) == per_layer["linear"].cache_numel(4096) == 4 * 16 * 17
