"""Positional encodings. Each acts at one place: the input embedding, a rotation of queries/keys, or an additive
score bias; the hooks and their no-op defaults are the contract in `ablate.components.PositionalEncoding`."""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.components import ModelSpec, PositionalEncoding

class NoPositionalEncoding(PositionalEncoding):
    """NoPE: the causal mask alone is the only source of order information."""


class LearnedPositionalEmbedding(PositionalEncoding):
    acts_on = "input"

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.table = nn.Embedding(spec.block_size, spec.d_model)

    def embed(self, h: torch.Tensor, start: int = 0) -> torch.Tensor:
        return h + self.table(torch.arange(start, start + h.shape[1], device=h.device))


def _check_base(base: float) -> list[str]:
    return [] if base > 1 else [f"pos_enc.base={base} must be > 1"]


def sinusoid_table(n_positions: int, dim: int, base: float) -> torch.Tensor:
    """(n_positions, dim): sin on even, cos on odd channels, wavelengths from 2π to base·2π (Vaswani et al.)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table.float()


class SinusoidalPositionalEmbedding(PositionalEncoding):
    acts_on = "input"

    def __init__(self, spec: ModelSpec, base: float = 10000.0):
        super().__init__(spec)
        self.register_buffer("table", sinusoid_table(spec.block_size, spec.d_model, base), persistent=False)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        return _check_base(knobs["base"])

    def embed(self, h: torch.Tensor, start: int = 0) -> torch.Tensor:
        return h + self.table[start : start + h.shape[1]].to(h.dtype)


def rope_angles(
    t: int, dim: int, base: float, device: torch.device, dtype: torch.dtype = torch.float32, start: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (T, dim), for rotating channel pairs (i, i + dim/2) by position · base^(-2i/dim), at
    positions start … start+T-1."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=device, dtype=dtype) / dim)
    angles = torch.outer(torch.arange(start, start + t, device=device, dtype=dtype), inv_freq)  # (T, dim/2)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, base: float, start: int = 0) -> torch.Tensor:
    """x: (B, H, T, D), D even, at positions start … start+T-1 -> x rotated so that q·k depends only on the
    offset between positions."""
    dtype = torch.promote_types(x.dtype, torch.float32)  # half precision rotates in float32; float64 stays float64
    cos, sin = rope_angles(x.shape[-2], x.shape[-1], base, x.device, dtype, start)
    x1, x2 = x.chunk(2, dim=-1)
    rotated_half = torch.cat([-x2, x1], dim=-1)
    return (x.to(dtype) * cos + rotated_half.to(dtype) * sin).to(x.dtype)


class RotaryPositionalEncoding(PositionalEncoding):
    acts_on = "rotary"

    def __init__(self, spec: ModelSpec, base: float = 10000.0):
        super().__init__(spec)
        self.base = base

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        problems = _check_base(knobs["base"])
        if spec.attention.cls.rotates_full_head and spec.head_dim % 2:
            problems.append(
                f"pos_enc=rope needs an even head dim, but model.d_model={spec.d_model} / model.n_heads={spec.n_heads}"
                f" = {spec.head_dim}; change d_model or n_heads"
            )
        return problems

    def rotate(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        return apply_rope(x, self.base, start)


def t5_relative_buckets(offset: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Causal T5 buckets (Raffel et al., 2020, `bidirectional=False`): distance n = max(offset, 0); n < num_buckets/2
    gets its own bucket, larger n share log-spaced buckets up to max_distance, beyond which all share the last."""
    n = offset.clamp(min=0)
    max_exact = num_buckets // 2
    # log of 0 is never used: `where` picks n itself for n < max_exact; clamp keeps the unused branch finite
    log_ratio = torch.log(n.clamp(min=max_exact).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    return torch.where(n < max_exact, n, large.clamp(max=num_buckets - 1))


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
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        num_buckets, max_distance = knobs["num_buckets"], knobs["max_distance"]
        if not isinstance(num_buckets, int) or num_buckets < 2:
            return [f"pos_enc.num_buckets={num_buckets} must be an integer >= 2"]
        if not isinstance(max_distance, int) or max_distance <= num_buckets // 2:
            return [
                f"pos_enc.max_distance={max_distance} must be an integer > num_buckets/2 = {num_buckets // 2} "
                "(distances below num_buckets/2 get exact buckets; log-spaced ones start there)"
            ]
        if spec.pos_enc_pattern and not knobs["shared"]:  # one table per layer, built for the layers it skips too
            return ["pos_enc=relative with shared=false cannot be a model.pos_enc_pattern entry; use shared=true"]
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


class ALiBi(PositionalEncoding):
    """Attention with linear biases: head h adds -slope_h · (query position - key position) to its scores."""

    acts_on = "bias"

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.register_buffer("slopes", alibi_slopes(spec.n_heads), persistent=False)

    def offset_bias(self, layer: int, offset: torch.Tensor) -> torch.Tensor:
        distance = offset.clamp(min=0).to(self.slopes.dtype)
        return -self.slopes.view(-1, *([1] * offset.dim())) * distance
