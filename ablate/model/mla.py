"""Multi-head latent attention (DeepSeek-AI, 2024, "DeepSeek-V2", section 2.1).

Keys and values come from one compressed latent c_KV = W_DKV h of kv_lora_rank dims; queries optionally from a
latent c_Q = W_DQ h of q_lora_rank dims. Each head's query and key are [nope part ; rope part]: the nope parts are
up-projected from the latents, the rope parts are a separate query projection per head and ONE key projection of h
shared by all heads (the "decoupled" key, cacheable next to c_KV). Per token and layer a cache holds
kv_lora_rank + qk_rope_head_dim numbers. As in DeepSeek-V2, RMSNorm follows each latent.

Position encodings:
- rope: rotates only the decoupled parts (q_R, k_R); the nope parts carry content only.
- relative, alibi: their bias is added to the full scores (MLA forms a score matrix like MHA).
- none, learned, sinusoidal: nothing rotates; the decoupled part stays as an extra query-key channel whose key is
  shared by all heads (MQA-like), so parameters and cache size are the same as with rope.
Scores are scaled by 1/sqrt(qk_nope_head_dim + qk_rope_head_dim).

Knobs shared with the other softmax attentions (`HeadKnobs`): qk_norm normalizes each head's whole query and key
[nope ; rope] before RoPE (so the shared rope key takes each head's own scale; a decoding cache still holds c_KV and
the unnormalized k_R, but W_UK can no longer be absorbed into the query, the key norm not being linear), gate
multiplies each head's value output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components import Attention, ForwardContext, ModelSpec, PositionalEncoding
from ablate.model.attention import HeadKnobs, attention_at_positions, causal_attention


def mla_dims(spec: ModelSpec, knobs: dict[str, int | None]) -> dict[str, int]:
    """The knobs with nulls resolved from the model size in DeepSeek-V2-Lite's proportions: latent d_model/4, nope
    and v parts one head_dim, rope part half a head_dim (rounded down to even), no query latent (null or 0)."""
    derived = {
        "kv_lora_rank": max(1, spec.d_model // 4),
        "q_lora_rank": 0,
        "qk_nope_head_dim": spec.head_dim,
        "qk_rope_head_dim": max(2, spec.head_dim // 4 * 2),
        "v_head_dim": spec.head_dim,
    }
    return {name: knobs[name] if knobs.get(name) is not None else default for name, default in derived.items()}


class MultiHeadLatentAttention(HeadKnobs, Attention):
    rotates_full_head = False  # RoPE rotates only the decoupled qk_rope_head_dim part, checked here

    def __init__(
        self,
        spec: ModelSpec,
        layer: int,
        kv_lora_rank: int | None = None,
        q_lora_rank: int | None = 0,
        qk_nope_head_dim: int | None = None,
        qk_rope_head_dim: int | None = None,
        v_head_dim: int | None = None,
        qk_norm: bool = False,
        gate: bool = False,
    ):
        super().__init__(spec, layer)
        dims = mla_dims(spec, dict(kv_lora_rank=kv_lora_rank, q_lora_rank=q_lora_rank,
                                   qk_nope_head_dim=qk_nope_head_dim, qk_rope_head_dim=qk_rope_head_dim,
                                   v_head_dim=v_head_dim))
        self.kv_lora_rank, self.q_lora_rank = dims["kv_lora_rank"], dims["q_lora_rank"]
        self.nope, self.rope, self.v_dim = dims["qk_nope_head_dim"], dims["qk_rope_head_dim"], dims["v_head_dim"]
        self.n_heads = h = spec.n_heads
        self.qk_head_dim, self.v_head_dim = self.nope + self.rope, self.v_dim
        d, bias = spec.d_model, spec.bias

        q_width = h * (self.nope + self.rope)
        if self.q_lora_rank:
            self.q_down = nn.Linear(d, self.q_lora_rank, bias=bias)  # W_DQ
            self.q_norm = nn.RMSNorm(self.q_lora_rank, eps=1e-6)
            self.q_up = nn.Linear(self.q_lora_rank, q_width, bias=bias)  # W_UQ and W_QR stacked
        else:
            self.q_proj = nn.Linear(d, q_width, bias=bias)
        self.kv_down = nn.Linear(d, self.kv_lora_rank + self.rope, bias=bias)  # W_DKV and W_KR stacked
        self.kv_norm = nn.RMSNorm(self.kv_lora_rank, eps=1e-6)
        self.kv_up = nn.Linear(self.kv_lora_rank, h * (self.nope + self.v_dim), bias=bias)  # W_UK and W_UV stacked
        self.out_proj = nn.Linear(h * self.v_dim, d, bias=bias)  # W_O
        self.out_proj.is_residual_output = True
        self.add_head_knobs(spec, qk_norm, gate, self.nope + self.rope, h * self.v_dim)

    @property
    def kv_cache_per_token(self) -> int:
        """Numbers an inference cache keeps per token for this layer: c_KV and the shared rope key."""
        return self.kv_lora_rank + self.rope

    @classmethod
    def value_heads(cls, spec: ModelSpec, knobs: dict) -> tuple[int, int]:
        return spec.n_heads, mla_dims(spec, knobs)["v_head_dim"]

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        given = {name: value for name, value in knobs.items() if name not in ("qk_norm", "gate")}
        problems = []
        for name, value in given.items():
            if value is None or (name == "q_lora_rank" and value == 0):
                continue
            if value < 1:
                off = " (0 or null: no query compression)" if name == "q_lora_rank" else " (null: derived from model)"
                problems.append(f"attention.{name}={value} must be a positive integer{off}")
        if problems:
            return problems
        dims = mla_dims(spec, given)
        if dims["kv_lora_rank"] >= spec.d_model:
            problems.append(
                f"attention.kv_lora_rank={dims['kv_lora_rank']} must be < model.d_model={spec.d_model} "
                "(the latent compresses the hidden state); lower it"
            )
        if dims["q_lora_rank"] >= spec.d_model:
            problems.append(
                f"attention.q_lora_rank={dims['q_lora_rank']} must be < model.d_model={spec.d_model}; "
                "lower it, or 0 for no query compression"
            )
        if spec.pos_enc.cls.acts_on == "rotary" and dims["qk_rope_head_dim"] % 2:
            problems.append(
                f"attention.qk_rope_head_dim={dims['qk_rope_head_dim']} must be even with pos_enc={spec.pos_enc.name}"
                " (RoPE rotates channel pairs); make it even"
            )
        return problems

    def heads(self, x: torch.Tensor, context: ForwardContext | None) -> tuple[torch.Tensor, ...]:
        """x (B, T, d_model) -> q_nope (B, H, T, nope), q_rope (B, H, T, rope), c_KV (B, T, r_kv) normed, and the
        shared k_rope (B, 1, T, rope), not yet rotated."""
        b, t, _ = x.shape
        h, nope, rope = self.n_heads, self.nope, self.rope
        q = self.q_up(self.q_norm(self.q_down(x))) if self.q_lora_rank else self.q_proj(x)
        q_nope, q_rope = q.view(b, t, h, nope + rope).transpose(1, 2).split([nope, rope], dim=-1)
        c_kv, k_rope = self.kv_down(x).split([self.kv_lora_rank, rope], dim=-1)  # (B, T, r_kv), (B, T, rope)
        return q_nope, q_rope, self.kv_norm(c_kv), k_rope.unsqueeze(1)  # one rope key for all heads

    def keys_values(self, q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor, k_rope: torch.Tensor,
                    context: ForwardContext | None) -> tuple[torch.Tensor, ...]:
        """Every head's full key and value from the latent: q, k (B, H, T, nope + rope) not yet rotated (qk-normed
        as a whole with qk_norm), v (B, H, T, v) with values mixed."""
        b, t, _ = c_kv.shape
        h, nope, rope = self.n_heads, self.nope, self.rope
        kv = self.kv_up(c_kv).view(b, t, h, nope + self.v_dim).transpose(1, 2)
        k_nope, v = kv.split([nope, self.v_dim], dim=-1)
        q = torch.cat([q_nope, q_rope], dim=-1)
        k = torch.cat([k_nope, k_rope.expand(b, h, t, rope)], dim=-1)
        q, k = self.normalize_qk(q, k)  # each head's whole query and key, before RoPE
        return q, k, self.mix_values(v, context)

    def rotate(self, x: torch.Tensor, pos: PositionalEncoding, start: int = 0) -> torch.Tensor:
        """RoPE on the decoupled part (the last `rope` channels) only."""
        return torch.cat([x[..., : self.nope], pos.rotate(x[..., self.nope :], start)], dim=-1)

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None) -> torch.Tensor:
        t = x.shape[1]
        q, k, v = self.keys_values(*self.heads(x, context), context)
        q, k = self.rotate(q, pos), self.rotate(k, pos)
        # SDPA's fused kernels want one head dim for q, k and v (else it falls back to forming the T×T scores):
        # zero padding changes no dot product, and the scale stays 1/sqrt(nope + rope)
        qk_dim, width = self.nope + self.rope, max(self.nope + self.rope, self.v_dim)
        if qk_dim < width:
            q, k = F.pad(q, (0, width - qk_dim)), F.pad(k, (0, width - qk_dim))
        if self.v_dim < width:
            v = F.pad(v, (0, width - self.v_dim))
        bias = pos.score_bias(self.layer, t, x.device)
        y = causal_attention(q, k, v, bias, self.attn_dropout, scale=qk_dim**-0.5)[..., : self.v_dim]
        return self.out_proj(self.gate_heads(x, y.transpose(1, 2).flatten(2)))  # (B, H, T, v) -> (B, T, H·v)

    @property
    def absorbs(self) -> bool:
        """Whether decoding attends in the latent space: W_UK folded into the query and W_UV applied after the
        attention (DeepSeek-V2, section 2.1.2). Not with qk_norm (the key norm is not linear) nor with
        model.value_residual (values mixed per token are no longer W_UV c)."""
        return self.qk_norm is None and not self.value_residual

    def cache_numel(self, t: int) -> int:
        """Absorbed: t · (kv_lora_rank + qk_rope_head_dim), the latent and the shared rope key. Otherwise each
        head's full key and value: t · n_heads · (nope + rope + v_head_dim)."""
        return t * (self.kv_cache_per_token if self.absorbs else self.n_heads * (self.nope + self.rope + self.v_dim))

    def decode(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext) -> torch.Tensor:
        cache = context.cache
        q_nope, q_rope, c_kv, k_rope = self.heads(x, context)
        if not self.absorbs:
            q, k, v = self.keys_values(q_nope, q_rope, c_kv, k_rope, context)
            q, k = self.rotate(q, pos, cache.start), self.rotate(k, pos, cache.start)
            (k, v), first = cache.extend(self.layer, (k, v))
            y = attention_at_positions(q, k, v, cache.start, first, pos, self.layer, scale=(self.nope + self.rope) ** -0.5)
            return self.out_proj(self.gate_heads(x, y.transpose(1, 2).flatten(2)))
        # the cache: [c_KV ; rotated k_R] per token, one "key head" shared by all heads, whose first r_kv channels
        # are also the value (MQA in the latent space)
        latent_key = torch.cat([c_kv.unsqueeze(1), pos.rotate(k_rope, cache.start)], dim=-1)  # (B, 1, T, r + rope)
        (latent_key,), first = cache.extend(self.layer, (latent_key,))
        weight = self.kv_up.weight.view(self.n_heads, self.nope + self.v_dim, self.kv_lora_rank)
        w_uk, w_uv = weight.split([self.nope, self.v_dim], dim=1)  # (H, nope, r), (H, v, r)
        q = torch.cat([q_nope @ w_uk, pos.rotate(q_rope, cache.start)], dim=-1)  # (B, H, T, r + rope)
        latent = latent_key[..., : self.kv_lora_rank]
        y = attention_at_positions(q, latent_key, latent, cache.start, first, pos, self.layer,
                                   scale=(self.nope + self.rope) ** -0.5) @ w_uv.transpose(1, 2)  # (B, H, T, v)
        if self.kv_up.bias is not None:  # the key bias adds q·b_K to every score of a query: softmax ignores it
            y = y + self.kv_up.bias.view(self.n_heads, self.nope + self.v_dim)[:, None, self.nope :]
        return self.out_proj(self.gate_heads(x, y.transpose(1, 2).flatten(2)))
