"""Positional encodings. Each acts at one place: the input embedding, a rotation of queries/keys, or an additive
score bias. The base class gives every hook a no-op default so attention can call all three unconditionally.

Score biases here are functions of the offset (query position - key position) only, so sparse attention can ask for
the bias of just the (query, key) pairs it computes (`offset_bias`) instead of a full (H, T, T) matrix."""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.registry import Registry
from ablate.spec import ModelSpec

POS_ENC = Registry("pos_enc")


class PositionalEncoding(nn.Module):
    acts_on: str | None = None  # "input" | "rotary" | "bias" | None

    def __init__(self, spec: ModelSpec):
        super().__init__()

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, T, d_model) token embeddings -> with position information added."""
        return h

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, T, D) queries or keys -> rotated by position."""
        return x

    def offset_bias(self, layer: int, offset: torch.Tensor) -> torch.Tensor | None:
        """offset: integer tensor of query - key positions, any shape -> additive score bias (H, *offset.shape),
        or None. Only meaningful where offset >= 0 (the causal mask hides the rest)."""
        return None

    def score_bias(self, layer: int, t: int, device: torch.device) -> torch.Tensor | None:
        """An additive (H, T, T) bias for layer `layer`'s attention scores, or None."""
        if self.acts_on != "bias":  # skip building a T×T offset matrix for nothing
            return None
        position = torch.arange(t, device=device)
        return self.offset_bias(layer, position[:, None] - position[None, :])


@POS_ENC.register("none")
class NoPositionalEncoding(PositionalEncoding):
    """NoPE: the causal mask alone is the only source of order information."""


@POS_ENC.register("learned")
class LearnedPositionalEmbedding(PositionalEncoding):
    acts_on = "input"

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.table = nn.Embedding(spec.block_size, spec.d_model)

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.table(torch.arange(h.shape[1], device=h.device))


def sinusoid_table(n_positions: int, dim: int, base: float) -> torch.Tensor:
    """(n_positions, dim): sin on even, cos on odd channels, wavelengths from 2π to base·2π (Vaswani et al.)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table.float()


@POS_ENC.register("sinusoidal")
class SinusoidalPositionalEmbedding(PositionalEncoding):
    acts_on = "input"

    def __init__(self, spec: ModelSpec, base: float = 10000.0):
        super().__init__(spec)
        self.register_buffer("table", sinusoid_table(spec.block_size, spec.d_model, base), persistent=False)

    @classmethod
    def check(cls, spec: ModelSpec, base: float = 10000.0) -> list[str]:
        return [f"pos_enc.base={base} must be > 1"] if base <= 1 else []

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.table[: h.shape[1]].to(h.dtype)


def rope_angles(
    t: int, dim: int, base: float, device: torch.device, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (T, dim), for rotating channel pairs (i, i + dim/2) by position · base^(-2i/dim)."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=device, dtype=dtype) / dim)
    angles = torch.outer(torch.arange(t, device=device, dtype=dtype), inv_freq)  # (T, dim/2)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """x: (B, H, T, D), D even -> x rotated so that q·k depends only on the offset between positions."""
    dtype = torch.promote_types(x.dtype, torch.float32)  # half precision rotates in float32; float64 stays float64
    cos, sin = rope_angles(x.shape[-2], x.shape[-1], base, x.device, dtype)
    x1, x2 = x.chunk(2, dim=-1)
    rotated_half = torch.cat([-x2, x1], dim=-1)
    return (x.to(dtype) * cos + rotated_half.to(dtype) * sin).to(x.dtype)


@POS_ENC.register("rope")
class RotaryPositionalEncoding(PositionalEncoding):
    acts_on = "rotary"

    def __init__(self, spec: ModelSpec, base: float = 10000.0):
        super().__init__(spec)
        self.base = base

    @classmethod
    def check(cls, spec: ModelSpec, base: float = 10000.0) -> list[str]:
        problems = [f"pos_enc.base={base} must be > 1"] if base <= 1 else []
        if spec.attention.name != "mla" and spec.head_dim % 2:
            problems.append(
                f"pos_enc=rope needs an even head dim, but model.d_model={spec.d_model} / model.n_heads={spec.n_heads}"
                f" = {spec.head_dim}; change d_model or n_heads"
            )
        return problems

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        return apply_rope(x, self.base)


def t5_relative_buckets(offset: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Causal T5 buckets (Raffel et al., 2020, `bidirectional=False`): distance n = max(offset, 0); n < num_buckets/2
    gets its own bucket, larger n share log-spaced buckets up to max_distance, beyond which all share the last."""
    n = offset.clamp(min=0)
    max_exact = num_buckets // 2
    # log of 0 is never used: `where` picks n itself for n < max_exact; clamp keeps the unused branch finite
    log_ratio = torch.log(n.clamp(min=max_exact).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    return torch.where(n < max_exact, n, large.clamp(max=num_buckets - 1))


@POS_ENC.register("relative")
class RelativePositionBias(PositionalEncoding):
    """A learned scalar per (head, distance bucket) added to attention scores (T5). One table shared by all layers
    (as in T5) or one per layer."""

    acts_on = "bias"

    def __init__(self, spec: ModelSpec, num_buckets: int = 32, max_distance: int = 128, shared: bool = True):
        super().__init__(spec)
        self.num_buckets, self.max_distance, self.shared = num_buckets, max_distance, shared
        n_tables = 1 if shared else spec.n_layers
        self.tables = nn.ModuleList(nn.Embedding(num_buckets, spec.n_heads) for _ in range(n_tables))

    @classmethod
    def check(cls, spec: ModelSpec, num_buckets: int = 32, max_distance: int = 128, shared: bool = True) -> list[str]:
        if not isinstance(num_buckets, int) or num_buckets < 2:
            return [f"pos_enc.num_buckets={num_buckets} must be an integer >= 2"]
        if not isinstance(max_distance, int) or max_distance <= num_buckets // 2:
            return [
                f"pos_enc.max_distance={max_distance} must be an integer > num_buckets/2 = {num_buckets // 2} "
                "(distances below num_buckets/2 get exact buckets; log-spaced ones start there)"
            ]
        if not isinstance(shared, bool):
            return [f"pos_enc.shared={shared} must be true (one table for all layers) or false (one per layer)"]
        return []

    def offset_bias(self, layer: int, offset: torch.Tensor) -> torch.Tensor:
        buckets = t5_relative_buckets(offset, self.num_buckets, self.max_distance)
        table = self.tables[0 if self.shared else layer]
        return table(buckets).movedim(-1, 0)  # (*offset.shape, H) -> (H, *offset.shape)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The ALiBi paper's head slopes (Press et al., 2022): for n a power of two, the geometric sequence starting at
    and multiplying by 2^(-8/n); otherwise the slopes for the largest power of two below n, followed by every other
    slope of the sequence for twice that power, until n slopes."""

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two_slopes(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two_slopes(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(power_of_two_slopes(closest) + extra)


@POS_ENC.register("alibi")
class ALiBi(PositionalEncoding):
    """Attention with linear biases: head h adds -slope_h · (query position - key position) to its scores."""

    acts_on = "bias"

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.register_buffer("slopes", alibi_slopes(spec.n_heads), persistent=False)

    def offset_bias(self, layer: int, offset: torch.Tensor) -> torch.Tensor:
        distance = offset.clamp(min=0).to(self.slopes.dtype)
        return -self.slopes.view(-1, *([1] * offset.dim())) * distance
