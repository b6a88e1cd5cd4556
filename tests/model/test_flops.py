"""FLOPs per token against hand-written formulas (PaLM appendix B: 6·N + 3 × the attention products)."""

from __future__ import annotations

import ablate
from ablate.model import count_parameters, flops_per_token


def _model(*overrides):
    return ablate.build_model(ablate.compose(["model=tiny", *overrides]))


def test_dense_mha_is_6n_plus_12_l_t_d():
    model = _model("attention=mha")
    n = count_parameters(model)["non_embedding"] + 256 * 64
    assert flops_per_token(model) == 6 * n + 12 * 2 * 64 * 64


def test_local_counts_only_its_window():
    model = _model("attention=local", "attention.window=16")
    n = count_parameters(model)["non_embedding"] + 256 * 64
    assert flops_per_token(model) == 6 * n + 3 * 2 * (2 * 16 * 4 * (16 + 16))


def test_linear_attention_cost_does_not_grow_with_context():
    short, long = _model("attention=linear"), _model("attention=linear", "model.block_size=1024")
    attention = [flops_per_token(m) - 6 * (count_parameters(m)["non_embedding"] + 256 * 64) for m in (short, long)]
    assert attention[0] == attention[1] == 3 * 2 * (4 * 4 * 16 * 17)


def test_mla_uses_its_own_head_dims():
    model = _model("attention=mla", "attention.qk_nope_head_dim=8", "attention.qk_rope_head_dim=4",
                   "attention.v_head_dim=12")
    n = count_parameters(model)["non_embedding"] + 256 * 64
    assert flops_per_token(model) == 6 * n + 3 * 2 * (2 * 64 * 4 * (12 + 12))
