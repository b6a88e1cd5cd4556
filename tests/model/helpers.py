"""Shared by the model tests: specs built directly (no Hydra), and plain reference computations written from the
papers' equations, independent of the code under test."""

from __future__ import annotations

import math

import torch

import ablate
from ablate.components import option, option_names
from ablate.spec import Choice, ModelSpec

DTYPE = torch.float64
TOL = dict(atol=1e-10, rtol=1e-10)  # float64 references: agreement to ~1e-10 means the same computation


def choice(family: str, name: str, knobs: dict | None = None) -> Choice:
    """The option `name` of `family` as its YAML defines it (class and knobs), with `knobs` set on top."""
    found = option(family, name)
    return Choice(name, {**found.knobs, **(knobs or {})}, found.target)


def option_class(family: str, name: str) -> type:
    return choice(family, name).cls


def make_spec(
    attention: str = "mha",
    pos_enc: str = "none",
    attention_knobs: dict | None = None,
    pos_enc_knobs: dict | None = None,
    d_model: int = 32,
    n_heads: int = 4,
    n_layers: int = 1,
    block_size: int = 64,
    dropout: float = 0.0,
    bias: bool = False,
    seed: int = 0,
    ffn: str = "relu",
    norm: str = "layernorm",
    placement: str = "pre",
) -> ModelSpec:
    return ModelSpec(
        vocab_size=50,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        block_size=block_size,
        pos_enc=choice("pos_enc", pos_enc, pos_enc_knobs),
        attention=choice("attention", attention, attention_knobs),
        ffn=choice("ffn", ffn),
        norm=choice("norm", norm),
        placement=choice("placement", placement),
        dropout=dropout,
        bias=bias,
        seed=seed,
    )


def build_layer(spec: ModelSpec, layer: int = 0):
    """The attention layer and positional encoding of `spec`, in float64, eval mode, random biases/tables."""
    attention = spec.attention.build(spec, layer)
    pos = spec.pos_enc.build(spec)
    for module in (attention, pos):
        module.to(DTYPE).eval()
        for p in module.parameters():  # not the zero/one inits: every weight must matter
            torch.nn.init.normal_(p, std=0.3)
    return attention, pos


def reference_rope(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE (Su et al., 2021) written out: channel pair (m, m + D/2) at position p rotates by p · base^(-2m/D)."""
    t, d = x.shape[-2], x.shape[-1]
    out = torch.empty_like(x)
    for m in range(d // 2):
        theta = base ** (-2 * m / d)
        angle = torch.arange(t, dtype=x.dtype) * theta
        a, b = x[..., m], x[..., m + d // 2]
        out[..., m] = a * torch.cos(angle) - b * torch.sin(angle)
        out[..., m + d // 2] = a * torch.sin(angle) + b * torch.cos(angle)
    return out


def reference_softmax_attention(q, k, v, allowed, bias=None, scale=None):
    """q: (B, H, T, D), k: (B, H, T, D), v: (B, H, T, Dv), allowed: bool (T, T) or (H, T, T), bias: (H, T, T)."""
    scores = q @ k.transpose(-1, -2) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    if bias is not None:
        scores = scores + bias
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v


def mha_projections(layer, x):
    """q, k, v (B, H, T, D) from an MHA-family layer's q_proj / kv_proj (keys are the first half of kv_proj)."""
    b, t, _ = x.shape
    h, d = layer.n_heads, layer.head_dim
    q = (x @ layer.q_proj.weight.T).view(b, t, h, d).transpose(1, 2)
    w_k, w_v = layer.kv_proj.weight.chunk(2, dim=0)
    k = (x @ w_k.T).view(b, t, -1, d).transpose(1, 2)
    v = (x @ w_v.T).view(b, t, -1, d).transpose(1, 2)
    return q, k, v


def assert_causal(overrides: list[str], t: int = 64, changed: int = 37) -> None:
    """Changing token `changed` leaves every earlier position's logits exactly as they were (float64), and does
    change the logits at `changed` itself."""
    model = ablate.build_model(ablate.compose(["model=tiny", "dropout=off", *overrides])).to(DTYPE).eval()
    ids = torch.randint(0, 256, (1, t))
    other = ids.clone()
    other[:, changed] = (ids[:, changed] + 1) % 256
    with torch.no_grad():
        before, after = model(torch.cat([ids, other]))
    torch.testing.assert_close(after[:changed], before[:changed], atol=1e-12, rtol=0)
    assert (after[changed] - before[changed]).abs().max() > 1e-6


# knobs that make the sparse variants actually sparse at model=tiny (block_size 64)
SPARSE_AT_TINY = {
    "local": ["attention.window=8"],
    "bigbird": ["attention.block_size=4", "attention.num_global_blocks=1", "attention.num_window_blocks=2",
                "attention.num_random_blocks=2"],
    "linear": ["attention.chunk_size=16"],
}


def allowed_pairs() -> list[tuple[str, str]]:
    """(pos_enc, attention) pairs that spec validation accepts, from the classes' own declarations."""
    pairs = []
    for pe in option_names("pos_enc"):
        for at in option_names("attention"):
            if option_class("pos_enc", pe).acts_on in option_class("attention", at).supports:
                pairs.append((pe, at))
    return pairs
