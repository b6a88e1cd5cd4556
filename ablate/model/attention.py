"""Causal self-attention variants. Each takes (B, T, d_model) and returns the same shape; positional encodings reach
it through the `pos` hooks (rotate queries/keys, add a score bias), which are no-ops for encodings acting elsewhere.

Two knobs every softmax attention here takes, written once in `HeadKnobs`: `qk_norm` and `gate` (off by default, and
off they add no parameter and no operation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components import Attention, ForwardContext, ModelSpec, PositionalEncoding
from ablate.model.flex import FlexAttention, causal_mask_mod


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


def mask_with_bias(allowed: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask as SDPA takes it, or, with a bias, the bias with -inf where not allowed."""
    if bias is None:
        return allowed
    return bias.to(dtype).masked_fill(~allowed, float("-inf"))


def causal_visible(q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    """Dense causal attention: a query sees every key at its position or before."""
    return k_pos <= q_pos


def attention_at_positions(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_start: int, k_start: int,
                           pos: PositionalEncoding, layer: int, visible=causal_visible,
                           scale: float | None = None) -> torch.Tensor:
    """Decoding's attention: q (B, H, Tq, D) at positions q_start …, k and v (B, H_kv, Tk, D) at positions
    k_start …, already rotated -> (B, H, Tq, D_v). A query attends to the keys `visible(q_pos, k_pos)` allows (the
    option's pattern), with `pos`'s score bias of each (query - key) offset."""
    b, h, tq, _ = q.shape
    q_pos = torch.arange(q_start, q_start + tq, device=q.device)[:, None]
    k_pos = torch.arange(k_start, k_start + k.shape[-2], device=q.device)[None, :]
    bias = pos.offset_bias(layer, q_pos - k_pos) if pos.acts_on == "bias" else None  # (H, Tq, Tk)
    mask = mask_with_bias(visible(q_pos, k_pos), bias, q.dtype)  # (Tq, Tk) or (H, Tq, Tk)
    group = h // k.shape[1]
    if group == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    # the G query heads that share a kv head become G·Tq rows against it: no copy of the cache per query head
    q = q.reshape(b, k.shape[1], group * tq, q.shape[-1])
    mask = mask.repeat(group, 1) if mask.dim() == 2 else mask.reshape(k.shape[1], group * tq, -1)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)  # (B, H_kv, G·Tq, D_v)
    return y.reshape(b, h, tq, v.shape[-1])


class QKNorm(nn.Module):
    """QK-norm (Wortsman et al., 2023, arXiv 2309.14322; after Dehghani et al., 2023) in the per-head RMSNorm form of
    Qwen3 and Gemma 3 (OLMo 2 instead normalizes all heads' channels at once): every query head and every key head is
    RMS-normalized over its own channels, then scaled by a learnable gain of head_dim — one gain for queries and one
    for keys, shared by all heads (2·head_dim parameters). Applied before RoPE, so the rotation acts on unit-RMS
    vectors; the score scale stays 1/sqrt(head_dim)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.q = nn.RMSNorm(head_dim, eps=1e-6)
        self.k = nn.RMSNorm(head_dim, eps=1e-6)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q(q), self.k(k)


class HeadKnobs:
    """The `qk_norm` and `gate` knobs, for any softmax attention (mixed in before `Attention`):

    - qk_norm: `QKNorm` on the query and key heads before positions are applied (+2·qk_head_dim parameters).
    - gate: gated attention (Qiu et al., 2025, arXiv 2505.06708), their best variant G1: the attention (SDPA) output of
      each head, before the output projection, is multiplied elementwise by sigmoid(x W_g), x the layer's input,
      W_g: d_model -> n_heads·v_head_dim (head-specific, elementwise; +d_model·n_heads·v_head_dim parameters, plus a
      bias with model.bias; FLOPs counted with the parameters). W_g is initialized like every linear layer,
      N(0, init_std), so the gate starts near ½.

    Off, neither builds a module, so parameters, init RNG draws and outputs are those of the option without them."""

    def add_head_knobs(self, spec: ModelSpec, qk_norm: bool, gate: bool, qk_head_dim: int, out_width: int) -> None:
        self.qk_norm = QKNorm(qk_head_dim) if qk_norm else None
        self.gate_proj = nn.Linear(spec.d_model, out_width, bias=spec.bias) if gate else None

    def normalize_qk(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q, k: (..., qk_head_dim) heads, not yet rotated."""
        return (q, k) if self.qk_norm is None else self.qk_norm(q, k)

    def gate_heads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d_model) the layer's input; y: (B, T, H·Dv) the heads' outputs -> y ⊙ sigmoid(x W_g)."""
        return y if self.gate_proj is None else y * torch.sigmoid(self.gate_proj(x))


class GroupedQueryAttention(HeadKnobs, Attention):
    """Grouped-query attention (Ainslie et al., 2023): n_heads query heads share n_kv_heads key/value heads."""

    def __init__(self, spec: ModelSpec, layer: int, n_kv_heads: int = 2, qk_norm: bool = False, gate: bool = False):
        super().__init__(spec, layer)
        self.n_heads, self.n_kv_heads, self.head_dim = spec.n_heads, n_kv_heads, spec.head_dim
        self.qk_head_dim = self.v_head_dim = spec.head_dim
        self.q_proj = nn.Linear(spec.d_model, spec.n_heads * spec.head_dim, bias=spec.bias)
        self.kv_proj = nn.Linear(spec.d_model, 2 * n_kv_heads * spec.head_dim, bias=spec.bias)
        self.out_proj = nn.Linear(spec.n_heads * spec.head_dim, spec.d_model, bias=spec.bias)
        self.out_proj.is_residual_output = True
        self.add_head_knobs(spec, qk_norm, gate, spec.head_dim, spec.n_heads * spec.head_dim)
        self.flex = FlexAttention()

    def compile_kernels(self) -> None:
        self.flex.compile()

    @property
    def kv_cache_per_token(self) -> int:
        """Numbers an inference cache keeps per token for this layer: one key and one value per kv head, so after t
        tokens cache_numel(t) = t · 2 · n_kv_heads · head_dim (MHA: n_kv_heads = n_heads; MQA: 1)."""
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

    @classmethod
    def value_heads(cls, spec: ModelSpec, knobs: dict) -> tuple[int, int]:
        return knobs["n_kv_heads"], spec.head_dim

    def heads(self, x: torch.Tensor, context: ForwardContext | None) -> tuple[torch.Tensor, ...]:
        """x (B, T, d_model) -> q (B, H, T, D), k and v (B, H_kv, T, D): projected, qk-normed, values mixed."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv_proj(x).view(b, t, 2, self.n_kv_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.normalize_qk(q, k)
        return q, k, self.mix_values(v, context)

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None) -> torch.Tensor:
        q, k, v = self.heads(x, context)
        return self.out_proj(self.gate_heads(x, self.attend(q, k, v, pos)))

    def decode(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext) -> torch.Tensor:
        """The KV cache: rotated keys and values of every past token the option's pattern may still show a query
        (`visible`; the last `cache_keep` tokens, all when None)."""
        q, k, v = self.heads(x, context)
        cache = context.cache
        q, k = pos.rotate(q, cache.start), pos.rotate(k, cache.start)
        (k, v), first = cache.extend(self.layer, (k, v), keep=self.cache_keep)
        y = attention_at_positions(q, k, v, cache.start, first, pos, self.layer, self.visible)
        return self.out_proj(self.gate_heads(x, y.transpose(1, 2).flatten(2)))

    cache_keep: int | None = None  # tokens of the past a later query can still see (None: all of them)

    def visible(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """Which keys a query attends to, by position (broadcast (Tq, 1) against (1, Tk)): dense causal."""
        return causal_visible(q_pos, k_pos)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: PositionalEncoding) -> torch.Tensor:
        """q: (B, H, T, D); k, v: (B, H_kv, T, D), positions not yet applied -> (B, T, H·D) head outputs.
        Subclasses that share these projections (local, BigBird, linear) replace only this."""
        q, k = pos.rotate(q), pos.rotate(k)
        return self.dense_attend(q, k, v, pos).transpose(1, 2).flatten(2)

    def dense_attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: PositionalEncoding
                     ) -> torch.Tensor:
        """Causal attention over rotated q (B, H, T, D), k, v (B, H_kv, T, D) -> (B, H, T, D). A score bias goes
        through flex on CUDA (an (H, T) table per offset instead of SDPA's (H, T, T) mask); without one SDPA's fused
        kernels are the fastest."""
        if pos.acts_on == "bias" and self.flex.applies(q):
            return self.flex(q, k, v, causal_mask_mod, pos, self.layer, self.attn_dropout)
        return causal_attention(q, k, v, pos.score_bias(self.layer, q.shape[-2], q.device), self.attn_dropout)


class MultiHeadAttention(GroupedQueryAttention):
    """Standard multi-head attention: every query head has its own key/value head."""

    def __init__(self, spec: ModelSpec, layer: int, qk_norm: bool = False, gate: bool = False):
        super().__init__(spec, layer, n_kv_heads=spec.n_heads, qk_norm=qk_norm, gate=gate)

    check = Attention.check  # no n_kv_heads to check

    @classmethod
    def value_heads(cls, spec: ModelSpec, knobs: dict) -> tuple[int, int]:
        return spec.n_heads, spec.head_dim


class MultiQueryAttention(GroupedQueryAttention):
    """Multi-query attention (Shazeer, 2019): all query heads share one key/value head."""

    def __init__(self, spec: ModelSpec, layer: int, qk_norm: bool = False, gate: bool = False):
        super().__init__(spec, layer, n_kv_heads=1, qk_norm=qk_norm, gate=gate)

    check = Attention.check  # no n_kv_heads to check

    @classmethod
    def value_heads(cls, spec: ModelSpec, knobs: dict) -> tuple[int, int]:
        return 1, spec.head_dim
