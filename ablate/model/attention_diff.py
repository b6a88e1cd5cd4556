"""Differential attention (Ye et al., 2024, arXiv 2410.05258, "Differential Transformer", section 2.1).

Each differential head splits its query and key into halves [Q1; Q2], [K1; K2] of d = head_dim channels and attends
with the difference of two softmax maps, weighted by a learned scalar λ:

    DiffAttn(X) = (softmax(Q1 K1ᵀ / √d) − λ · softmax(Q2 K2ᵀ / √d)) V,      V of 2d channels
    λ = exp(λ_q1 · λ_k1) − exp(λ_q2 · λ_k2) + λ_init,   λ_init = 0.8 − 0.6 · exp(−0.3 · (l − 1)),  l = layer + 1
    head_i' = (1 − λ_init) · RMSNorm(head_i)            (the paper's per-head GroupNorm, as its code does it)
    MultiHead(X) = Concat(head_1', …, head_h') W_O

Parameter-matched to MHA as the paper does: h = n_heads / 2 differential heads, each twice MHA's head_dim, so W_Q,
W_K, W_V, W_O are d_model × d_model as in MHA. λ_q1, λ_k1, λ_q2, λ_k2 (head_dim each, shared by the layer's heads,
N(0, 0.1²) at init) and the RMSNorm gain (2·head_dim, shared by the heads) come on top:

    parameters per layer = 4·d_model² + 6·head_dim   (+ MHA's biases with model.bias)

FLOPs are declared as the paper's computation: two score maps of d channels per head and one value product with the
difference map, 4·T·d_model per token as in MHA. This implementation spends 4·T·d_model more: both maps go through
one fused SDPA call (so no T×T matrix is kept) with q and k zero-padded to v's 2·head_dim, and the two value products
are subtracted after it. The decoding cache holds K and V, 2·d_model per token, as MHA's. Attention dropout drops
each map's weights independently (the paper's code drops the difference).

Positions: RoPE rotates each d-channel half (Q1, Q2, K1, K2), as the paper does; input encodings act before the layer.
Score biases (ALiBi, T5) are refused: they are defined per softmax head, and a differential head has two maps that the
paper gives no bias. Knobs: qk_norm (each half is a query/key head of d channels) and gate (on each head's 2·d output,
after the norm), as for the other softmax attentions (`HeadKnobs`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components import Attention, ForwardContext, ModelSpec, PositionalEncoding
from ablate.model.attention import HeadKnobs, attention_at_positions, causal_attention


def lambda_init(layer: int) -> float:
    """λ_init = 0.8 − 0.6 · exp(−0.3 · (l − 1)) for the layer at depth l = layer + 1 (layer counted from 0)."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer)


class DifferentialAttention(HeadKnobs, Attention):
    supports = frozenset({None, "input", "rotary"})
    unsupported_reason = {
        "bias": "a score bias (ALiBi, T5) is defined per softmax head, and a differential head subtracts two "
                "softmax maps that the paper gives no bias",
    }

    def __init__(self, spec: ModelSpec, layer: int, qk_norm: bool = False, gate: bool = False):
        super().__init__(spec, layer)
        d_model, self.head_dim = spec.d_model, spec.head_dim
        self.n_heads = spec.n_heads // 2  # differential heads, each with 2·head_dim query, key and value channels
        self.qk_head_dim = self.v_head_dim = 2 * spec.head_dim
        self.q_proj = nn.Linear(d_model, d_model, bias=spec.bias)  # head i: [Q1; Q2]
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=spec.bias)  # [K (head i: [K1; K2]) ; V]
        self.out_proj = nn.Linear(d_model, d_model, bias=spec.bias)
        self.out_proj.is_residual_output = True
        self.lambda_init = lambda_init(layer)
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            nn.Parameter(torch.randn(spec.head_dim) * 0.1) for _ in range(4))
        self.head_norm = nn.RMSNorm(2 * spec.head_dim, eps=1e-5)
        self.add_head_knobs(spec, qk_norm, gate, spec.head_dim, d_model)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        if spec.n_heads % 2:
            even = [h for h in range(2, spec.d_model + 1, 2) if spec.d_model % h == 0 and h <= 64]
            return [f"attention=diff needs an even model.n_heads (it pairs MHA's heads into n_heads/2 differential "
                    f"heads of 2·head_dim), but model.n_heads={spec.n_heads}; use one of {even}"]
        return []

    @classmethod
    def value_heads(cls, spec: ModelSpec, knobs: dict) -> tuple[int, int]:
        return spec.n_heads // 2, 2 * spec.head_dim

    def difference_weight(self) -> torch.Tensor:
        """λ = exp(λ_q1 · λ_k1) − exp(λ_q2 · λ_k2) + λ_init, one scalar for the layer."""
        return (torch.exp(self.lambda_q1 @ self.lambda_k1) - torch.exp(self.lambda_q2 @ self.lambda_k2)
                + self.lambda_init)

    def heads(self, x: torch.Tensor, context: ForwardContext | None) -> tuple[torch.Tensor, ...]:
        """x (B, T, d_model) -> q, k (B, 2h, T, d): map j of head i is row 2i + j, i.e. head i's [Q1; Q2] channels
        in order; v (B, h, T, 2d), values mixed; q and k qk-normed, not yet rotated."""
        b, t, _ = x.shape
        h, d = self.n_heads, self.head_dim
        q = self.q_proj(x).view(b, t, 2 * h, d).transpose(1, 2)
        k, v = self.kv_proj(x).split([2 * h * d, 2 * h * d], dim=-1)
        k = k.view(b, t, 2 * h, d).transpose(1, 2)
        v = self.mix_values(v.view(b, t, h, 2 * d).transpose(1, 2), context)  # (B, h, T, 2d)
        q, k = self.normalize_qk(q, k)
        return q, k, v

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None) -> torch.Tensor:
        q, k, v = self.heads(x, context)
        q, k = pos.rotate(q), pos.rotate(k)
        # both maps of a head read the head's V: one SDPA call over 2h maps, then (A1 − λ A2) V = A1 V − λ A2 V.
        # SDPA's fused kernels want one head dim for q, k and v (else it forms the T×T scores): zeros appended to
        # q and k change no dot product, and the scale stays 1/sqrt(d)
        d = self.head_dim
        q, k = F.pad(q, (0, d)), F.pad(k, (0, d))
        y = causal_attention(q, k, v.repeat_interleave(2, dim=1), None, self.attn_dropout, scale=d**-0.5)
        return self.combine(x, y)

    def decode(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext) -> torch.Tensor:
        """The KV cache holds the rotated K (2h maps of d) and V (h heads of 2d): 2·d_model per token, as MHA's."""
        q, k, v = self.heads(x, context)
        cache = context.cache
        q, k = pos.rotate(q, cache.start), pos.rotate(k, cache.start)
        (k, v), first = cache.extend(self.layer, (k, v))
        y = attention_at_positions(q, k, v.repeat_interleave(2, dim=1), cache.start, first, pos, self.layer,
                                   scale=self.head_dim**-0.5)
        return self.combine(x, y)

    def combine(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y (B, 2h, T, 2d), each map's value product -> the layer's output (B, T, d_model)."""
        b, _, t, _ = y.shape
        y = y.view(b, self.n_heads, 2, t, 2 * self.head_dim)
        y = y[:, :, 0] - self.difference_weight() * y[:, :, 1]  # (B, h, T, 2d)
        y = self.head_norm(y) * (1 - self.lambda_init)
        return self.out_proj(self.gate_heads(x, y.transpose(1, 2).flatten(2)))
