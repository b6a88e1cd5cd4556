"""Causal self-attention variants. Each takes (B, T, d_model) and returns the same shape; positional encodings reach
it through the `pos` hooks (rotate queries/keys, add a score bias), which are no-ops for encodings acting elsewhere."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components import Attention, ModelSpec, PositionalEncoding


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dropout_p: float,
    scale: float | None = None,
) -> torch.Tensor:
    """q: (B, H, T, D); k, v: (B, H_kv, T, D) with H_kv dividing H; bias: (H, T, T) or None -> (B, H, T, D_v).
    scale: of the scores, 1/sqrt(D) unless given."""
    gqa = k.shape[1] != q.shape[1]
    if gqa and q.device.type == "cpu":
        # SDPA's fused CPU kernel parallelizes a GQA backward over kv heads only (MQA: one thread); copies are faster
        k, v = (x.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for x in (k, v))
        gqa = False
    if bias is None:
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale, enable_gqa=gqa
        )
    t = q.shape[-2]
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    mask = bias.to(q.dtype).masked_fill(future, float("-inf"))
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale, enable_gqa=gqa
    )


class GroupedQueryAttention(Attention):
    """Grouped-query attention (Ainslie et al., 2023): n_heads query heads share n_kv_heads key/value heads."""

    def __init__(self, spec: ModelSpec, layer: int, n_kv_heads: int = 2):
        super().__init__(spec, layer)
        self.n_heads, self.n_kv_heads, self.head_dim = spec.n_heads, n_kv_heads, spec.head_dim
        self.qk_head_dim = self.v_head_dim = spec.head_dim
        self.q_proj = nn.Linear(spec.d_model, spec.n_heads * spec.head_dim, bias=spec.bias)
        self.kv_proj = nn.Linear(spec.d_model, 2 * n_kv_heads * spec.head_dim, bias=spec.bias)
        self.out_proj = nn.Linear(spec.n_heads * spec.head_dim, spec.d_model, bias=spec.bias)
        self.out_proj.is_residual_output = True

    @property
    def kv_cache_per_token(self) -> int:
        """Numbers an inference cache keeps per token for this layer: one key and one value per kv head."""
        return 2 * self.n_kv_heads * self.head_dim

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        n_kv_heads = knobs["n_kv_heads"]
        if n_kv_heads < 1 or spec.n_heads % n_kv_heads:
            divisors = [h for h in range(1, spec.n_heads + 1) if spec.n_heads % h == 0]
            return [
                f"attention.n_kv_heads={n_kv_heads} must divide model.n_heads={spec.n_heads}; "
                f"use one of {divisors}"
            ]
        return []

    def forward(self, x: torch.Tensor, pos: PositionalEncoding) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv_proj(x).view(b, t, 2, self.n_kv_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return self.out_proj(self.attend(q, k, v, pos))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: PositionalEncoding) -> torch.Tensor:
        """q: (B, H, T, D); k, v: (B, H_kv, T, D), positions not yet applied -> (B, T, H·D) head outputs.
        Subclasses that share these projections (local, BigBird, linear) replace only this."""
        q, k = pos.rotate(q), pos.rotate(k)
        bias = pos.score_bias(self.layer, q.shape[-2], q.device)
        y = causal_attention(q, k, v, bias, self.attn_dropout)  # (B, H, T, D)
        return y.transpose(1, 2).flatten(2)


class MultiHeadAttention(GroupedQueryAttention):
    """Standard multi-head attention: every query head has its own key/value head."""

    def __init__(self, spec: ModelSpec, layer: int):
        super().__init__(spec, layer, n_kv_heads=spec.n_heads)

    check = Attention.check  # no knobs


class MultiQueryAttention(GroupedQueryAttention):
    """Multi-query attention (Shazeer, 2019): all query heads share one key/value head."""

    def __init__(self, spec: ModelSpec, layer: int):
        super().__init__(spec, layer, n_kv_heads=1)

    check = Attention.check  # no knobs
