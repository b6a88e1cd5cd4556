"""Linear attentions with a state that forgets or overwrites: gated linear attention (`gla`) and the delta rule
(`deltanet`). Both run chunked for training (no T×T matrix, a running state across chunks) and keep only the state
while decoding.

GLA (Yang et al., 2024, "Gated Linear Attention Transformers with Hardware-Efficient Training", arXiv 2312.06635):
linear attention whose state forgets, per key channel, at a rate the input decides.

    S_t = diag(α_t) S_{t-1} + k_t v_tᵀ        (S: D_k × D_v per head)
    o_t = S_tᵀ q_t                            (q scaled by D_k^-1/2)
    α_t = sigmoid(x_t W_α1 W_α2 + b_α)^(1/τ)   (a low-rank gate per head and key channel, τ = 16)
    y_t = W_O (RMSNorm(o_t) ⊙ SiLU(x_t W_r))  (per-head norm, then the output gate)

Training runs the chunked form (`gla_chunked`): inside a chunk of C tokens, query i meets key j ≤ i through
q_i · (exp(b_i - b_j) ⊙ k_j), b the running sum of log α inside the chunk, formed per pair so every exponent is ≤ 0
(no overflow however small the gates); across chunks a state carries the rest. Decoding keeps S (H·D_k·D_v numbers)
and steps the same function from it.

GLA takes no positional encoding inside attention (its gates give recency): input encodings (learned,
sinusoidal) and none are allowed, RoPE and score biases are refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components import ForwardContext, ModelSpec, PositionalEncoding
from ablate.model.attention import MultiHeadAttention


def gla_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor, chunk_size: int,
                state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k, log_alpha: (B, H, T, D_k); v: (B, H, T, D_v); state: (B, H, D_k, D_v) or None (zeros) ->
    (o (B, H, T, D_v), the state after the last token). o_t = Σ_{j<=t} (q_t · (Π_{j<s<=t} α_s ⊙ k_j)) v_j
    + q_t · (Π_{s<=t} α_s ⊙ S_0), exactly the recurrence S_t = diag(α_t) S_{t-1} + k_t v_tᵀ, o_t = S_tᵀ q_t."""
    b, h, t, dk = q.shape
    if state is None:
        state = q.new_zeros(b, h, dk, v.shape[-1])
    c = min(chunk_size, t)
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    outputs = []
    for start in range(0, t, c):
        qc, kc, vc, gc = (x[:, :, start:start + c] for x in (q, k, v, log_alpha))
        n = qc.shape[2]
        cum = gc.cumsum(dim=2)  # (B, H, n, D_k): log Π_{s<=i} α_s inside the chunk
        # per pair: exp(b_i - b_j) for j <= i (exponent <= 0), zero above the diagonal
        diff = (cum[:, :, :, None, :] - cum[:, :, None, :, :]).masked_fill(~causal[:n, :n, None], -float("inf"))
        scores = (qc[:, :, :, None, :] * kc[:, :, None, :, :] * diff.exp()).sum(-1)  # (B, H, n, n)
        outputs.append(scores @ vc + (qc * cum.exp()) @ state)
        to_end = (cum[:, :, -1:] - cum).exp()  # exp(b_n - b_j): the decay from token j to the chunk's end
        state = cum[:, :, -1, :, None].exp() * state + (kc * to_end).transpose(-1, -2) @ vc
    return torch.cat(outputs, dim=2), state


class GatedLinearAttention(MultiHeadAttention):
    """GLA with MHA's q, k, v and output projections, plus the low-rank forget gate, the output gate and a per-head
    RMSNorm."""

    supports = frozenset({None, "input"})
    unsupported_reason = {
        "rotary": "GLA's per-channel forget gates carry position; RoPE's rotations would mix decayed channels "
                  "(the paper uses none): use pos_enc=none, learned or sinusoidal",
        "bias": "an additive score bias needs a softmax score matrix, which gated linear attention never forms",
    }

    def __init__(self, spec: ModelSpec, layer: int, chunk_size: int = 16, gate_rank: int = 16,
                 gate_temperature: float = 16.0):
        super().__init__(spec, layer)
        self.chunk_size, self.gate_temperature = chunk_size, gate_temperature
        width = spec.n_heads * spec.head_dim
        self.alpha_down = nn.Linear(spec.d_model, gate_rank, bias=False)
        self.alpha_up = nn.Linear(gate_rank, width, bias=True)
        self.out_gate = nn.Linear(spec.d_model, width, bias=spec.bias)
        self.out_norm = nn.RMSNorm(spec.head_dim, eps=1e-5)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        problems = [f"attention.{name}={knobs[name]} must be an integer >= 1"
                    for name in ("chunk_size", "gate_rank") if knobs[name] < 1]
        if not knobs["gate_temperature"] >= 1:
            problems.append(f"attention.gate_temperature={knobs['gate_temperature']} must be >= 1 (GLA: 16; "
                            f"larger keeps the gates nearer 1)")
        return problems

    @property
    def kv_cache_per_token(self) -> int:
        """Nothing grows per token: decoding keeps S, H·D_k·D_v numbers."""
        return 0

    def cache_numel(self, t: int) -> int:
        return self.n_heads * self.qk_head_dim * self.v_head_dim if t > 0 else 0

    def context_flops(self, t: int) -> int:
        """Per token and head: decay and add k⊗v to the state, read it with q (D_k·D_v each), in any t."""
        return 2 * 2 * self.n_heads * self.qk_head_dim * self.v_head_dim

    def log_alpha(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_model) -> log α (B, H, T, D_k) = logsigmoid(x W_α1 W_α2 + b) / τ."""
        b, t, _ = x.shape
        logits = self.alpha_up(self.alpha_down(x)).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        return F.logsigmoid(logits) / self.gate_temperature

    def mix(self, x: torch.Tensor, context: ForwardContext | None, state: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.heads(x, context)
        o, state = gla_chunked(q * self.head_dim**-0.5, k, v, self.log_alpha(x), self.chunk_size, state)
        y = self.out_norm(o).transpose(1, 2).flatten(2) * F.silu(self.out_gate(x))  # (B, T, H·D_v)
        return self.out_proj(y), state

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None) -> torch.Tensor:
        return self.mix(x, context, None)[0]

    def decode(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext) -> torch.Tensor:
        """The recurrence from the state of every earlier token; this pass's tokens are added to it."""
        y, context.cache.states[self.layer] = self.mix(x, context, context.cache.states.get(self.layer))
        return y


def delta_rule_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, chunk_size: int,
                       state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k: (B, H, T, D_k); v: (B, H, T, D_v); beta: (B, H, T); state (B, H, D_k, D_v) or None ->
    (o (B, H, T, D_v), the state after the last token), exactly the recurrence
        S_t = S_{t-1} + β_t k_t (v_t - S_{t-1}ᵀ k_t)ᵀ,   o_t = S_tᵀ q_t.
    Per chunk of C tokens starting from S_0, the new values u_t = β_t (v_t - S_{t-1}ᵀ k_t) solve the unit lower-
    triangular system (I + diag(β) tril(K Kᵀ, -1)) U = diag(β) (V - K S_0) (the WY/UT form of Yang et al., 2024,
    arXiv 2406.06484); then O = Q S_0 + tril(Q Kᵀ) U and S = S_0 + Kᵀ U."""
    b, h, t, dk = q.shape
    if state is None:
        state = q.new_zeros(b, h, dk, v.shape[-1])
    c = min(chunk_size, t)
    strictly_lower = torch.ones(c, c, dtype=torch.bool, device=q.device).tril(-1)
    lower = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    eye = torch.eye(c, dtype=q.dtype, device=q.device)
    outputs = []
    for start in range(0, t, c):
        qc, kc, vc, bc = (x[:, :, start:start + c] for x in (q, k, v, beta))
        n = qc.shape[2]
        gram = (kc @ kc.transpose(-1, -2)).masked_fill(~strictly_lower[:n, :n], 0.0)  # (B, H, n, n)
        system = eye[:n, :n] + bc[..., None] * gram
        u = torch.linalg.solve_triangular(system, bc[..., None] * (vc - kc @ state), upper=False, unitriangular=True)
        scores = (qc @ kc.transpose(-1, -2)).masked_fill(~lower[:n, :n], 0.0)
        outputs.append(qc @ state + scores @ u)
        state = state + kc.transpose(-1, -2) @ u
    return torch.cat(outputs, dim=2), state


class DeltaNet(MultiHeadAttention):
    """DeltaNet (Schlag et al., 2021; chunked by Yang et al., 2024, arXiv 2406.06484): a linear attention whose state
    is written by the delta rule, S_t = S_{t-1} + β_t k_t (v_t - S_{t-1}ᵀ k_t)ᵀ: each token replaces what the state
    held for its key by a β_t-mix of the old and the new value instead of only adding to it. q and k go through SiLU
    and are L2-normalized per head (so the update is a contraction), β_t = sigmoid(x_t W_β) per head, q is scaled by
    D^-1/2, and each head's output is RMS-normalized before the output projection. The paper's short causal
    convolution on q, k, v is left out. MHA's projections plus W_β (d_model·H) and the norm's gain."""

    supports = frozenset({None, "input"})
    unsupported_reason = {
        "rotary": "DeltaNet's state is addressed by normalized keys; RoPE would make a token's key depend on its "
                  "position, which the delta rule's overwrite does not expect (the paper uses none): use "
                  "pos_enc=none, learned or sinusoidal",
        "bias": "an additive score bias needs a softmax score matrix, which DeltaNet never forms",
    }

    def __init__(self, spec: ModelSpec, layer: int, chunk_size: int = 32):
        super().__init__(spec, layer)
        self.chunk_size = chunk_size
        self.beta_proj = nn.Linear(spec.d_model, spec.n_heads, bias=spec.bias)
        self.out_norm = nn.RMSNorm(spec.head_dim, eps=1e-5)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        return [] if knobs["chunk_size"] >= 1 else [f"attention.chunk_size={knobs['chunk_size']} must be an integer >= 1"]

    @property
    def kv_cache_per_token(self) -> int:
        return 0

    def cache_numel(self, t: int) -> int:
        """The state S: H·D_k·D_v numbers, whatever t."""
        return self.n_heads * self.qk_head_dim * self.v_head_dim if t > 0 else 0

    def context_flops(self, t: int) -> int:
        """Per token and head: read S with k, write the rank-1 correction, read S with q (D_k·D_v each)."""
        return 3 * 2 * self.n_heads * self.qk_head_dim * self.v_head_dim

    def mix(self, x: torch.Tensor, context: ForwardContext | None, state: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.heads(x, context)
        q, k = (F.normalize(F.silu(t), dim=-1) for t in (q, k))
        beta = torch.sigmoid(self.beta_proj(x)).transpose(1, 2)  # (B, H, T)
        o, state = delta_rule_chunked(q * self.head_dim**-0.5, k, v, beta, self.chunk_size, state)
        return self.out_proj(self.out_norm(o).transpose(1, 2).flatten(2)), state

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None) -> torch.Tensor:
        return self.mix(x, context, None)[0]

    def decode(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext) -> torch.Tensor:
        y, context.cache.states[self.layer] = self.mix(x, context, context.cache.states.get(self.layer))
        return y
