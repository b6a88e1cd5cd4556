"""The component contract: what every option of a family declares, with defaults a new option inherits.

An option is one class. Its knobs are the keyword arguments of its `__init__` after the family's fixed arguments
(`spec`, and `layer` for attention and blocks): names, types (annotations) and defaults are written there once.
The config layer type-checks a YAML's knobs against that signature (`knob_schema`), then calls `check` for the
cross-field rules, with every knob filled in — so `check` never repeats a default.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, ClassVar

import torch
from torch import nn

from ablate.spec import ModelSpec

FIXED_ARGUMENTS = ("self", "spec", "layer")


@dataclasses.dataclass
class ForwardContext:
    """What the layers of one forward pass share. TransformerLM makes a fresh one per forward and hands it through
    each Block to its attention (`forward(x, pos, context)`); None (a layer run on its own) shares nothing.

    first_values: the first attention layer's values, (B, H_v, T, D_v), for `model.value_residual`."""

    first_values: torch.Tensor | None = None


class Component:
    """Mixed into each family's base class. `family` names the config group (`conf/<family>/`)."""

    family: ClassVar[str]

    @classmethod
    def knob_parameters(cls) -> dict[str, inspect.Parameter]:
        params = inspect.signature(cls.__init__).parameters
        return {name: p for name, p in params.items()
                if name not in FIXED_ARGUMENTS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    @classmethod
    def knob_schema(cls) -> type:
        """The knobs as a dataclass (OmegaConf validates a YAML's values against it)."""
        hints = typing.get_type_hints(cls.__init__)
        fields = []
        for name, p in cls.knob_parameters().items():
            default = dataclasses.MISSING if p.default is p.empty else p.default
            fields.append((name, hints.get(name, Any), dataclasses.field(default=default)))
        return dataclasses.make_dataclass(f"{cls.__name__}Knobs", fields)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict[str, Any]) -> list[str]:
        """Problems with these knobs for this model, one line each (knobs: every knob, defaults filled in)."""
        return []

    def active_parameters(self) -> int:
        """Parameters one token passes through (a mixture of experts: only the routed ones)."""
        return sum(p.numel() for p in self.parameters())

    def compile_kernels(self) -> None:
        """Swap in compiled kernels (e.g. flex attention). Called once by the trainer's `parallelize` step, so model
        code never compiles itself; the default has nothing to compile."""

    def aux_loss(self) -> torch.Tensor | None:
        """A loss term from the last forward pass (e.g. expert load balancing), added to the training loss and
        logged as `train/aux/<family>`; None when there is none."""
        return None


class PositionalEncoding(Component, nn.Module):
    """Acts at one place: the input embedding, a rotation of queries/keys, or an additive score bias. Every hook
    has a no-op default, so attention calls all three unconditionally. Built as `cls(spec, **knobs)`.

    Score biases are functions of the offset (query position - key position) only, so sparse attention asks for
    the bias of just the pairs it computes (`offset_bias`) instead of a full (H, T, T) matrix."""

    family = "pos_enc"
    acts_on: ClassVar[str | None] = None  # "input" | "rotary" | "bias" | None

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


class Attention(Component, nn.Module):
    """Causal self-attention: (B, T, d_model) -> (B, T, d_model), positions through the `pos` hooks. Built as
    `cls(spec, layer, **knobs)`; `forward(x, pos, context=None)` (`context`: a `ForwardContext`).

    Declares where a positional encoding may act on it (`supports`, with the reason for what it refuses), how many
    keys a query meets (`keys_per_query`, for FLOPs), what decoding keeps per token (`kv_cache_per_token`) and the
    values it can share for `model.value_residual` (`value_heads`; its forward then passes its values through
    `mix_values`). Subclasses set `n_heads`, `qk_head_dim` and `v_head_dim`."""

    family = "attention"
    supports: ClassVar[frozenset] = frozenset({None, "input", "rotary", "bias"})
    unsupported_reason: ClassVar[dict[str, str]] = {}
    rotates_full_head: ClassVar[bool] = True  # RoPE rotates whole heads (so head_dim must be even)

    def __init__(self, spec: ModelSpec, layer: int):
        super().__init__()
        self.layer = layer
        self.dropout_p = spec.dropout
        self.value_residual = spec.value_residual

    @classmethod
    def value_heads(cls, spec: ModelSpec, knobs: dict[str, Any]) -> tuple[int, int] | None:
        """(heads, head dim) of the values this option mixes with the first layer's under `model.value_residual`, or
        None where it cannot (validation then refuses, with `unsupported_reason["value_residual"]` if given)."""
        return None

    def mix_values(self, v: torch.Tensor, context: ForwardContext | None) -> torch.Tensor:
        """Value residual learning (Zhou et al., 2024, arXiv 2410.17897, ResFormer): with `model.value_residual`, the
        first layer keeps its values V_1 in `context` and every later layer attends with V_n' = ½·V_n + ½·V_1 (the
        paper's fixed λ = 0.5; modded-nanogpt learns it). No parameters, no change to the attention weights."""
        if not self.value_residual or context is None:
            return v
        if context.first_values is None:
            context.first_values = v
            return v
        return 0.5 * v + 0.5 * context.first_values

    def keys_per_query(self, t: int) -> int:
        """How many keys one query is scored against in a length-t sequence (no causal discount, as in PaLM)."""
        return t

    def context_flops(self, t: int) -> int:
        """Forward FLOPs per token of the score and value products (the projections are counted with the
        parameters): 2 per multiply-add, over the keys a query sees (PaLM, appendix B)."""
        return 2 * self.keys_per_query(t) * self.n_heads * (self.qk_head_dim + self.v_head_dim)

    @property
    def kv_cache_per_token(self) -> int:
        """Numbers a decoding cache keeps per token for this layer."""
        return self.n_heads * (self.qk_head_dim + self.v_head_dim)

    @property
    def attn_dropout(self) -> float:
        """Dropout on attention weights: only while training."""
        return self.dropout_p if self.training else 0.0


class FeedForward(Component, nn.Module):
    """Position-wise: (B, T, d_model) -> (B, T, d_model). Built as `cls(spec, **knobs)`."""

    family = "ffn"

    def __init__(self, spec: ModelSpec):
        super().__init__()


class Norm(Component, nn.Module):
    """(..., d_model) -> (..., d_model), used before/after each sublayer and before the head. Built as
    `cls(spec, **knobs)`. An option may also derive from a torch norm (`class LayerNorm(Norm, nn.LayerNorm)`)."""

    family = "norm"


class Block(Component, nn.Module):
    """A placement option: how one layer wires norm, attention and FFN around the residual stream. Built as
    `cls(spec, layer, **knobs)`; `forward(x, pos, context=None)`, handing `context` (a `ForwardContext`) to its
    attention. The base builds the sublayers from the spec, the attention
    being this layer's own (`spec.at_layer`: a `model.attention_pattern` entry, else `attention`)."""

    family = "placement"
    final_norm: ClassVar[bool] = True  # whether the model needs a norm after the last block

    def __init__(self, spec: ModelSpec, layer: int):
        super().__init__()
        layer_spec = spec.at_layer(layer)
        self.norm1 = spec.norm.build(spec)
        self.attn = layer_spec.attention.build(layer_spec, layer)
        self.norm2 = spec.norm.build(spec)
        self.ffn = spec.ffn.build(spec)
        self.drop = nn.Dropout(spec.dropout)


FAMILY_BASES: dict[str, type[Component]] = {
    cls.family: cls for cls in (PositionalEncoding, Attention, FeedForward, Norm, Block)
}
