"""Causal linear attention (Katharopoulos et al., 2020, "Transformers are RNNs").

softmax(q·k) is replaced by φ(q)·φ(k) with the positive feature map φ(x) = elu(x) + 1, so causal attention becomes
running sums: y_i = φ(q_i)ᵀ S_i / φ(q_i)ᵀ z_i with S_i = Σ_{j<=i} φ(k_j) v_jᵀ and z_i = Σ_{j<=i} φ(k_j). We compute it
in chunks (no T×T matrix, memory linear in T). There are no attention weights to drop out, so attention dropout does
not apply here (residual dropout still does). With RoPE, the numerator uses rotated features and the denominator the
plain ones, as RoFormer (Su et al., 2021, eq. 19) proposes, so the normalizer stays positive.

Of the softmax attentions' knobs it takes `gate` (an output gate suits any attention; gated linear attentions use
one) and refuses `qk_norm`, which exists to bound softmax logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.components import ForwardContext, ModelSpec, PositionalEncoding
from ablate.model.attention import MultiHeadAttention


EPS = 1e-6  # added to the normalizer: φ > 0 keeps it positive, but it may underflow


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1


def chunked_causal_products(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """q, k: (B, H, T, D); v: (B, H, T, Dv) -> (B, H, T, Dv) with row i = Σ_{j<=i} (q_i · k_j) v_j, without a T×T
    matrix: inside a chunk of C tokens the (C, C) causal products are formed directly, across chunks the state
    Σ k_j v_jᵀ of all earlier chunks is used. Memory O(T·C + T/C·D·Dv)."""
    b, h, t, _ = q.shape
    c = min(chunk_size, t)
    n = -(-t // c)
    if n * c != t:  # zeros appended: padded keys add nothing, padded queries are cut off below
        q, k, v = (F.pad(x, (0, 0, 0, n * c - t)) for x in (q, k, v))
    qc, kc, vc = (x.reshape(b, h, n, c, -1) for x in (q, k, v))
    causal = torch.ones(c, c, dtype=q.dtype, device=q.device).tril()
    intra = ((qc @ kc.transpose(-1, -2)) * causal) @ vc  # (B, H, n, C, Dv)
    kv = kc.transpose(-1, -2) @ vc  # (B, H, n, D, Dv): each chunk's Σ k vᵀ
    # state before chunk m = sum over chunks < m (a shifted cumsum; subtracting kv from the cumsum loses precision)
    state = torch.cat([torch.zeros_like(kv[:, :, :1]), kv[:, :, :-1].cumsum(dim=2)], dim=2)
    return (intra + qc @ state).view(b, h, n * c, -1)[:, :, :t]


def causal_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    chunk_size: int,
    q_num: torch.Tensor | None = None,
    k_num: torch.Tensor | None = None,
    eps: float = EPS,
) -> torch.Tensor:
    """q, k: (B, H, T, D) positive features; v: (B, H, T, Dv) -> (B, H, T, Dv), with
        y_i = Σ_{j<=i} (q_num_i · k_num_j) v_j  /  Σ_{j<=i} (q_i · k_j)
    where q_num, k_num (the numerator's features, e.g. rotated ones) default to q, k."""
    if q_num is None and k_num is None:
        # one pass: a column of ones appended to v makes the last output column the normalizer
        out = chunked_causal_products(q, k, F.pad(v, (0, 1), value=1.0), chunk_size)
        num, den = out[..., :-1], out[..., -1:]
    else:
        num = chunked_causal_products(q if q_num is None else q_num, k if k_num is None else k_num, v, chunk_size)
        den = (q * k.cumsum(dim=-2)).sum(-1, keepdim=True)  # q_i · Σ_{j<=i} k_j
    return num / (den + eps)


class LinearAttention(MultiHeadAttention):
    """MHA's projections with softmax attention replaced by chunked causal linear attention."""

    supports = frozenset({None, "input", "rotary"})
    unsupported_reason = {
        "bias": "an additive score bias needs a softmax score matrix, which linear attention never forms",
    }

    def __init__(self, spec: ModelSpec, layer: int, chunk_size: int = 64, qk_norm: bool = False, gate: bool = False):
        super().__init__(spec, layer, qk_norm=qk_norm, gate=gate)
        self.chunk_size = chunk_size

    @property
    def kv_cache_per_token(self) -> int:
        """Nothing grows per token: generation keeps a fixed state of H·D·(D + 1) numbers (S and z) instead."""
        return 0

    def cache_numel(self, t: int) -> int:
        """The recurrent state, whatever t (> 0): S = Σ φ(k_j) v_jᵀ (H·D·D_v) and z = Σ φ(k_j) (H·D)."""
        return self.n_heads * self.qk_head_dim * (self.v_head_dim + 1) if t > 0 else 0

    def decode(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext) -> torch.Tensor:
        """The recurrence: this pass's tokens read the state S, z of all earlier ones (plus their own causal
        products, chunked), then add themselves to it. With RoPE, S holds rotated features and z plain ones."""
        q, k, v = self.heads(x, context)
        cache = context.cache
        fq, fk = elu_feature_map(q), elu_feature_map(k)
        nq, nk = (pos.rotate(fq, cache.start), pos.rotate(fk, cache.start)) if pos.acts_on == "rotary" else (fq, fk)
        b, h, _, d = fq.shape
        state, normalizer = cache.states.get(self.layer) or (fq.new_zeros(b, h, d, v.shape[-1]), fq.new_zeros(b, h, d))
        num = chunked_causal_products(nq, nk, v, self.chunk_size) + nq @ state
        den = (fq * (normalizer[:, :, None] + fk.cumsum(dim=-2))).sum(-1, keepdim=True)
        cache.states[self.layer] = (state + nk.transpose(-1, -2) @ v, normalizer + fk.sum(dim=-2))
        y = num / (den + EPS)
        return self.out_proj(self.gate_heads(x, y.transpose(1, 2).flatten(2)))

    def context_flops(self, t: int) -> int:
        """Per token and head: add k⊗v and k to the running state, read it with q (D·(D_v + 1) each), in any t."""
        return 2 * 2 * self.n_heads * self.qk_head_dim * (self.v_head_dim + 1)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        problems = []
        if knobs["chunk_size"] < 1:
            problems.append(f"attention.chunk_size={knobs['chunk_size']} must be an integer >= 1")
        if knobs["qk_norm"]:
            problems.append("attention.qk_norm=true cannot be used with attention=linear: QK-norm bounds the logits "
                            "of a softmax, and linear attention has none (its elu+1 features take q and k as they "
                            "are); set attention.qk_norm=false")
        return problems

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: PositionalEncoding) -> torch.Tensor:
        fq, fk = elu_feature_map(q), elu_feature_map(k)
        if pos.acts_on == "rotary":  # only the numerator rotates (RoFormer)
            y = causal_linear_attention(fq, fk, v, self.chunk_size, pos.rotate(fq), pos.rotate(fk))
        else:
            y = causal_linear_attention(fq, fk, v, self.chunk_size)
        return y.transpose(1, 2).flatten(2)
