"""Bad input to the new variants: one clear line each, at compose time (`validate(compose(...))`)."""

from __future__ import annotations

import logging

import pytest

import ablate
from ablate.config import validate
from ablate.spec import SpecError

BAD = [
    (["attention=local", "attention.window=0"], "attention.window=0 must be an integer >= 1"),
    (["attention=local", "attention.window=-4"], "attention.window=-4 must be an integer >= 1"),
    (["attention=bigbird", "attention.block_size=0"], "attention.block_size=0 must be an integer >= 1"),
    (["attention=bigbird", "attention.num_window_blocks=0"], "attention.num_window_blocks=0 must be an integer >= 1"),
    (["attention=bigbird", "attention.num_global_blocks=-1"], "attention.num_global_blocks=-1 must be an integer >= 0"),
    (["attention=bigbird", "attention.num_random_blocks=-2"], "attention.num_random_blocks=-2 must be an integer >= 0"),
    (["attention=linear", "attention.chunk_size=0"], "attention.chunk_size=0 must be an integer >= 1"),
    (["attention=mla", "attention.kv_lora_rank=0"], "attention.kv_lora_rank=0 must be a positive integer"),
    (["attention=mla", "attention.kv_lora_rank=-8"], "attention.kv_lora_rank=-8 must be a positive integer"),
    (["attention=mla", "attention.kv_lora_rank=256"], "attention.kv_lora_rank=256 must be < model.d_model=256"),
    (["attention=mla", "attention.kv_lora_rank=300"], "attention.kv_lora_rank=300 must be < model.d_model=256"),
    (["attention=mla", "attention.q_lora_rank=-1"], "attention.q_lora_rank=-1 must be a positive integer (0 or null"),
    (["attention=mla", "attention.q_lora_rank=256"], "attention.q_lora_rank=256 must be < model.d_model=256"),
    (["attention=mla", "attention.qk_nope_head_dim=0"], "attention.qk_nope_head_dim=0 must be a positive integer"),
    (["attention=mla", "attention.v_head_dim=-2"], "attention.v_head_dim=-2 must be a positive integer"),
    (["attention=mla", "attention.qk_rope_head_dim=0"], "attention.qk_rope_head_dim=0 must be a positive integer"),
    (["attention=mla", "pos_enc=rope", "attention.qk_rope_head_dim=7"],
     "attention.qk_rope_head_dim=7 must be even with pos_enc=rope"),
    (["pos_enc=rope", "model.d_model=36", "model.n_heads=4"], "pos_enc=rope needs an even head dim"),
    (["pos_enc=relative", "pos_enc.num_buckets=1"], "pos_enc.num_buckets=1 must be an integer >= 2"),
    (["pos_enc=relative", "pos_enc.max_distance=16"], "pos_enc.max_distance=16 must be an integer > num_buckets/2"),
    (["pos_enc=relative", "attention=linear"],
     "pos_enc=relative cannot be used with attention=linear: an additive score bias needs a softmax score matrix"),
    (["pos_enc=alibi", "attention=linear"], "pos_enc=alibi cannot be used with attention=linear"),
    (["attention=local", "+attention.n_kv_heads=2"], "attention.n_kv_heads is not a knob of attention=local"),
    (["ffn=geglu", "ffn.multiple_of=0"], "ffn.multiple_of=0 must be a positive integer"),
    (["ffn=silu", "ffn.hidden_mult=0"], "ffn.hidden_mult=0 must be > 0"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_input_is_one_clear_line(overrides, message):
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(overrides))
    assert len(error.value.problems) == 1, error.value.problems
    assert message in error.value.problems[0]


GOOD = [
    ["attention=mla", "pos_enc=none", "attention.qk_rope_head_dim=7"],  # odd is fine when nothing rotates
    ["attention=mla", "attention.q_lora_rank=null", "attention.kv_lora_rank=32"],
    ["attention=bigbird", "attention.num_global_blocks=0", "attention.num_random_blocks=0"],
    ["pos_enc=relative", "pos_enc.shared=false"],
    ["norm=none", "placement=post"],
    ["pos_enc=rope", "attention=linear"],
]


@pytest.mark.parametrize("overrides", GOOD, ids=" ".join)
def test_edge_values_that_are_fine(overrides):
    validate(ablate.compose(overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ["attention=local", "attention.window=256"],
        ["attention=local", "attention.window=1000"],
        ["attention=bigbird", "attention.block_size=128"],
    ],
    ids=" ".join,
)
def test_pattern_covering_the_context_is_allowed_and_said_to_equal_dense(overrides, caplog):
    with caplog.at_level(logging.WARNING, logger="ablate"):
        validate(ablate.compose(overrides))  # model=small: block_size 256
    assert "equals dense causal attention" in caplog.text
