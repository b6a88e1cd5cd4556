"""ffn=silu/geglu and norm=none against their definitions; norm=none's divergence ends as a status, not a crash."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import ablate
from ablate.config import model_spec

from .helpers import DTYPE, TOL


def _ffn(name: str, model: str = "tiny"):
    spec = model_spec(ablate.compose([f"model={model}", f"ffn={name}"]), vocab_size=256)
    return spec.ffn.build(spec).to(DTYPE)


def test_geglu_is_gelu_gated_and_sized_like_swiglu():
    geglu, swiglu = _ffn("geglu"), _ffn("swiglu")
    x = torch.randn(3, 64, dtype=DTYPE)
    expected = (F.gelu(x @ geglu.gate.weight.T) * (x @ geglu.up.weight.T)) @ geglu.down.weight.T
    torch.testing.assert_close(geglu(x), expected, **TOL)
    assert [p.shape for p in geglu.parameters()] == [p.shape for p in swiglu.parameters()]
    assert geglu.gate.weight.shape == (168, 64)  # 2/3 · 4 · 64 = 170.7, nearest multiple of 8


def test_silu_is_non_gated_with_the_relu_mlp_shape():
    silu, relu = _ffn("silu"), _ffn("relu")
    assert [p.shape for p in silu.parameters()] == [p.shape for p in relu.parameters()]
    x = torch.randn(3, 64, dtype=DTYPE)
    torch.testing.assert_close(silu(x), F.silu(x @ silu.up.weight.T) @ silu.down.weight.T, **TOL)


def test_norm_none_has_no_parameters_and_is_the_identity():
    for placement in ("pre", "post"):
        cfg = ablate.compose(["model=tiny", "norm=none", f"placement={placement}", "dropout=off"])
        model = ablate.build_model(cfg).to(DTYPE).eval()
        norms = [m for b in model.blocks for m in (b.norm1, b.norm2)] + [model.final_norm]
        assert all(sum(p.numel() for p in m.parameters()) == 0 for m in norms)
        x = torch.randn(2, 8, 64, dtype=DTYPE)
        assert all(torch.equal(m(x), x) for m in norms)
        block, pos = model.blocks[0], model.pos_enc
        h = x + block.attn(x, pos)  # pre and post are the same block once the norms are gone
        torch.testing.assert_close(block(x, pos), h + block.ffn(h), **TOL)


def test_norm_none_diverging_ends_as_diverged(tiny_overrides, tmp_path):
    cfg = ablate.compose(
        [*tiny_overrides, "norm=none", "train.lr=1000", "train.grad_clip=0", "train.sample.tokens=0",
         f"out_dir={tmp_path}"]
    )
    assert ablate.train(cfg)["status"] == "diverged"
