"""Linear attentions with a state that forgets or overwrites: gated linear attention (`gla`), the delta rule
(`deltanet`, `gated_deltanet`) and Mamba-2's SSD (`mamba2`). All run chunked for training (no T×T matrix, a running state across chunks) and keep only the state
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

from ablate.components import Attention, ForwardContext, ModelSpec, PositionalEncoding
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


class StateMixer:
    """What the recurrent options share (mixed in before their attention base): `mix(x, context, state)` returns the
    layer's output and the state after the last token; training runs it from no state, decoding from the cache's,
    and nothing grows per token (the state has a fixed size, `cache_numel`)."""

    kv_cache_per_token = 0

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None) -> torch.Tensor:
        return self.mix(x, context, None)[0]

    def decode(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext) -> torch.Tensor:
        """The recurrence from the state of every earlier token; this pass's tokens are added to it."""
        y, context.cache.states[self.layer] = self.mix(x, context, context.cache.states.get(self.layer))
        return y


class GatedLinearAttention(StateMixer, MultiHeadAttention):
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


def delta_rule_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, chunk_size: int,
                       state: torch.Tensor | None = None, log_decay: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k: (B, H, T, D_k); v: (B, H, T, D_v); beta, log_decay: (B, H, T) (log_decay None: no decay); state
    (B, H, D_k, D_v) or None -> (o (B, H, T, D_v), the state after the last token), exactly the recurrence
        S_t = α_t S_{t-1} + β_t k_t (v_t - α_t S_{t-1}ᵀ k_t)ᵀ,   o_t = S_tᵀ q_t     (α_t = exp(log_decay_t)).
    Per chunk of C tokens starting from S_0, with b_t the running sum of log α in the chunk and Γ_ts = exp(b_t - b_s)
    (t >= s, so every exponent is <= 0), the new values u_t = β_t (v_t - α_t S_{t-1}ᵀ k_t) solve the unit lower-
    triangular system (I + diag(β) (tril(K Kᵀ, -1) ⊙ Γ)) U = diag(β) (V - diag(e^b) K S_0) (the WY/UT form of Yang
    et al., 2024, arXiv 2406.06484; gated: Yang et al., 2025, arXiv 2412.06464); then
    O = diag(e^b) Q S_0 + (tril(Q Kᵀ) ⊙ Γ) U and S = e^{b_C} S_0 + (K ⊙ e^{b_C - b})ᵀ U."""
    b, h, t, dk = q.shape
    if state is None:
        state = q.new_zeros(b, h, dk, v.shape[-1])
    if log_decay is None:
        log_decay = beta.new_zeros(beta.shape)
    c = min(chunk_size, t)
    lower = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    eye = torch.eye(c, dtype=q.dtype, device=q.device)
    outputs = []
    for start in range(0, t, c):
        qc, kc, vc, bc, gc = (x[:, :, start:start + c] for x in (q, k, v, beta, log_decay))
        n = qc.shape[2]
        cum = gc.cumsum(dim=-1)  # (B, H, n)
        decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(~lower[:n, :n], -float("inf")).exp()  # Γ
        gram = (kc @ kc.transpose(-1, -2)) * decay * (1 - eye[:n, :n])  # strictly lower
        system = eye[:n, :n] + bc[..., None] * gram
        rhs = bc[..., None] * (vc - cum.exp()[..., None] * (kc @ state))
        u = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
        outputs.append(cum.exp()[..., None] * (qc @ state) + ((qc @ kc.transpose(-1, -2)) * decay) @ u)
        to_end = (cum[..., -1:] - cum).exp()[..., None]  # (B, H, n, 1)
        state = cum[..., -1, None, None].exp() * state + (kc * to_end).transpose(-1, -2) @ u
    return torch.cat(outputs, dim=2), state


class DeltaNet(StateMixer, MultiHeadAttention):
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
        o, state = delta_rule_chunked(q * self.head_dim**-0.5, k, v, beta, self.chunk_size, state, self.log_decay(x))
        return self.out_proj(self.gate(x, self.out_norm(o).transpose(1, 2).flatten(2))), state

    def log_decay(self, x: torch.Tensor) -> torch.Tensor | None:
        """log α (B, H, T) of the state's forget gate; DeltaNet has none."""
        return None

    def gate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y (B, T, H·D_v), the normalized heads, before the output projection; DeltaNet has no output gate."""
        return y


def mamba_decay_init(n_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2's decay parameters, spread over the heads (deterministic, as the model's init leaves them): A = 1 … 16
    (log A stored) and a time step dt = 0.001 … 0.1 log-spaced, stored as the bias whose softplus gives it."""
    a_log = torch.linspace(1.0, 16.0, n_heads).log()
    dt = torch.logspace(-3, -1, n_heads)
    return a_log, dt + torch.log(-torch.expm1(-dt))


class GatedDeltaNet(DeltaNet):
    """Gated DeltaNet (Yang, Kautz and Hatamizadeh, 2025, arXiv 2412.06464): the delta rule with a forget gate,
    S_t = α_t S_{t-1} + β_t k_t (v_t - α_t S_{t-1}ᵀ k_t)ᵀ, α_t = exp(-exp(A_log)·softplus(x_t W_α + dt_bias)) per
    head (Mamba-2's decay), and a SiLU output gate: y = W_O (RMSNorm(o) ⊙ SiLU(x W_g)). The rest as DeltaNet."""

    def __init__(self, spec: ModelSpec, layer: int, chunk_size: int = 32):
        super().__init__(spec, layer, chunk_size=chunk_size)
        self.alpha_proj = nn.Linear(spec.d_model, spec.n_heads, bias=False)
        a_log, dt_bias = mamba_decay_init(spec.n_heads)
        self.a_log, self.dt_bias = nn.Parameter(a_log), nn.Parameter(dt_bias)
        self.out_gate = nn.Linear(spec.d_model, spec.n_heads * spec.head_dim, bias=spec.bias)

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        return (-self.a_log.exp() * F.softplus(self.alpha_proj(x) + self.dt_bias)).transpose(1, 2)

    def gate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y * F.silu(self.out_gate(x))


class Mamba2(StateMixer, Attention):
    """Mamba-2's SSD mixer (Dao and Gu, 2024, arXiv 2405.21060) in attention's place: per head h (head dim P) a state
    S (N × P) with a scalar decay, S_t = a_t S_{t-1} + dt_t B_t x_tᵀ, y_t = S_tᵀ C_t + D_h x_t, where
    a_t = exp(-dt_t·exp(A_log_h)), dt_t = softplus(x W_dt + dt_bias), and B_t, C_t (N each) are shared by the heads.
    One input projection gives z, x, B, C and dt; the output is W_O RMSNorm(y ⊙ SiLU(z)). The inner width is d_model
    (H heads of head_dim). Training runs the chunked form (`gla_chunked` with the decay on every state channel),
    decoding keeps S. The paper's short causal convolution on x, B, C is left out."""

    supports = frozenset({None, "input"})
    unsupported_reason = {
        "rotary": "Mamba-2's decays carry position and it has no queries and keys to rotate: use pos_enc=none, "
                  "learned or sinusoidal",
        "bias": "an additive score bias needs a softmax score matrix, which Mamba-2 never forms",
    }

    def __init__(self, spec: ModelSpec, layer: int, state_size: int = 32, chunk_size: int = 16):
        super().__init__(spec, layer)
        self.n_heads, self.head_dim = spec.n_heads, spec.head_dim
        self.state_size, self.chunk_size = state_size, chunk_size
        self.qk_head_dim, self.v_head_dim = state_size, spec.head_dim
        inner = spec.n_heads * spec.head_dim
        self.in_proj = nn.Linear(spec.d_model, 2 * inner + 2 * state_size + spec.n_heads, bias=spec.bias)
        self.out_proj = nn.Linear(inner, spec.d_model, bias=spec.bias)
        self.out_proj.is_residual_output = True
        a_log, dt_bias = mamba_decay_init(spec.n_heads)
        self.a_log, self.dt_bias = nn.Parameter(a_log), nn.Parameter(dt_bias)
        self.skip = nn.Parameter(torch.ones(spec.n_heads))  # D
        self.norm = nn.RMSNorm(inner, eps=1e-5)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        return [f"attention.{name}={knobs[name]} must be an integer >= 1"
                for name in ("state_size", "chunk_size") if knobs[name] < 1]


    def cache_numel(self, t: int) -> int:
        """The state: H·N·P numbers, whatever t."""
        return self.n_heads * self.state_size * self.head_dim if t > 0 else 0

    def context_flops(self, t: int) -> int:
        """Per token and head: decay and add B⊗x to the state, read it with C (N·P each)."""
        return 2 * 2 * self.n_heads * self.state_size * self.head_dim

    def mix(self, x: torch.Tensor, context: ForwardContext | None, state: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        h, p, n = self.n_heads, self.head_dim, self.state_size
        z, xs, bs, cs, dt = self.in_proj(x).split([h * p, h * p, n, n, h], dim=-1)
        xs = xs.view(b, t, h, p).transpose(1, 2)  # (B, H, T, P)
        dt = F.softplus(dt + self.dt_bias).transpose(1, 2)  # (B, H, T)
        log_a = (-dt * self.a_log.exp()[:, None])[..., None].expand(b, h, t, n)
        queries = cs[:, None].expand(b, h, t, n)  # C, shared by the heads
        keys = dt[..., None] * bs[:, None]  # dt·B
        y, state = gla_chunked(queries, keys, xs, log_a, self.chunk_size, state)
        y = y + self.skip[:, None, None] * xs
        y = self.norm(y.transpose(1, 2).flatten(2) * F.silu(z))
        return self.out_proj(y), state
