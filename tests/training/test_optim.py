"""AdamW parameter groups, the learning-rate schedule and nucleus sampling, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ablate
from ablate.components import option_names
from ablate.config import train_spec
from ablate.spec import COMPONENT_FAMILIES
from ablate.training.optim import lr_at, parameter_groups
from ablate.training.sample import generate, top_p_filter
from tests.fixtures.variants import FIXTURE_OVERRIDES


def test_no_weight_decay_on_norms_biases_embeddings():
    model = ablate.build_model(ablate.compose(["model=tiny", "model.bias=true", "pos_enc=learned"]))
    decay, no_decay = parameter_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            assert id(module.weight) not in decayed
        if isinstance(module, nn.LayerNorm):
            assert id(module.weight) not in decayed and id(module.bias) not in decayed
        if isinstance(module, nn.Linear):
            assert (id(module.weight) in decayed) != (module.weight is model.token_embedding.weight)
            if module.bias is not None:
                assert id(module.bias) not in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_warmup_then_cosine_to_floor():
    spec = train_spec(ablate.compose(["train.lr=1.0", "train.min_lr_ratio=0.1", "train.warmup_fraction=0.1"]))
    total = 100
    assert lr_at(0, total, spec) == 0.1  # first of 10 warmup steps
    assert lr_at(9, total, spec) == 1.0
    assert lr_at(10, total, spec) == 1.0
    assert math.isclose(lr_at(99, total, spec), 0.1)
    middle = 10 + (99 - 10) / 2
    assert math.isclose(lr_at(int(middle), total, spec), 0.1 + 0.45 * (1 + math.cos(math.pi * 44 / 89)))
    lrs = [lr_at(s, total, spec) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    kept = top_p_filter(probs.log(), 0.75).isfinite()
    assert kept.tolist() == [True, True, False, False]
    kept = top_p_filter(probs.log()[[2, 0, 3, 1]], 0.75).isfinite()
    assert kept.tolist() == [False, True, False, True]
    assert top_p_filter(probs.log(), 0.01).isfinite().tolist() == [True, False, False, False]


def test_generate_extends_prompt_deterministically():
    model = ablate.build_model(ablate.compose(["model=tiny"]))
    a = generate(model, [1, 2, 3], 10, temperature=1.0, top_p=0.9, seed=0)
    b = generate(model, [1, 2, 3], 10, temperature=1.0, top_p=0.9, seed=0)
    assert a == b and a[:3] == [1, 2, 3] and len(a) == 13
    assert len(generate(model, [1] * 70, 3, temperature=0, top_p=1.0, seed=0)) == 73  # context cropped to 64


def _linear_rule(model: nn.Module) -> set[int]:
    """The decay set before decay went by rank: the nn.Linear weights that are not embedding tables."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear) and id(m.weight) not in embedding_ids}


# Every built-in option once (defaults elsewhere), with and without biases, untied, and a few mixed combinations;
# but ffn=moe, whose stacked (3-D) expert weights are no nn.Linear (tests/model/test_moe.py: they decay).
BUILT_IN_SAMPLE = [
    *([f"{family}={name}"] for family in COMPONENT_FAMILIES for name in option_names(family)
      if f"{family}={name}" != "ffn=moe"),
    ["model.bias=true", "pos_enc=relative", "pos_enc.shared=false", "ffn=swiglu"],
    ["model.tie_embeddings=false", "attention=gqa", "pos_enc=learned"],
    ["attention=mla", "attention.q_lora_rank=16", "pos_enc=rope", "ffn=geglu", "norm=rmsnorm", "placement=post"],
    ["attention=bigbird", "pos_enc=alibi", "model.bias=true", "norm=rmsnorm"],
    ["attention=linear", "pos_enc=sinusoidal", "model.bias=true", "model.tie_embeddings=false"],
]


@pytest.mark.parametrize("overrides", BUILT_IN_SAMPLE, ids=lambda o: ",".join(o))
def test_decay_by_rank_is_the_linear_rule_for_built_in_options(overrides):
    model = ablate.build_model(ablate.compose(["model=tiny", *overrides]))
    decay, no_decay = parameter_groups(model, 0.1)
    assert {id(p) for p in decay["params"]} == _linear_rule(model)
    assert all(p.dim() <= 1 or any(p is m.weight for m in model.modules() if isinstance(m, nn.Embedding))
               for p in no_decay["params"])


def test_raw_weight_tensors_of_rank_two_and_more_decay_their_gains_do_not():
    model = ablate.build_model(ablate.compose(["model=tiny", *FIXTURE_OVERRIDES, "ffn=raw_weights"]))
    decay, _ = parameter_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    for block in model.blocks:
        assert block.ffn.w_in.dim() == 2 and id(block.ffn.w_in) in decayed
        assert block.ffn.w_out.dim() == 3 and id(block.ffn.w_out) in decayed
        assert id(block.ffn.gain) not in decayed
    assert id(model.token_embedding.weight) not in decayed and id(model.head.weight) not in decayed
