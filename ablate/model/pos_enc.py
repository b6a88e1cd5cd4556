"""Positional encodings. Each acts at one place: the input embedding, a rotation of queries/keys, or an additive
score bias. The base class gives every hook a no-op default so attention can call all three unconditionally."""

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

    def score_bias(self, layer: int, t: int, device: torch.device) -> torch.Tensor | None:
        """An additive (H, T, T) bias for layer `layer`'s attention scores, or None."""
        return None


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


def rope_angles(t: int, dim: int, base: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (T, dim), for rotating channel pairs (i, i + dim/2) by position · base^(-2i/dim)."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    angles = torch.outer(torch.arange(t, device=device, dtype=torch.float32), inv_freq)  # (T, dim/2)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """x: (B, H, T, D), D even -> x rotated so that q·k depends only on the offset between positions."""
    cos, sin = rope_angles(x.shape[-2], x.shape[-1], base, x.device)
    x1, x2 = x.chunk(2, dim=-1)
    rotated_half = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rotated_half.float() * sin).to(x.dtype)


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
