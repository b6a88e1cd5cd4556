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
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ablate.spec import ModelSpec

FIXED_ARGUMENTS = ("self", "spec", "layer")


@dataclasses.dataclass
class ForwardContext:
    """What the layers of one forward pass share. TransformerLM makes a fresh one per forward and hands it through
    each Block to its attention (`forward(x, pos, context)`); None (a layer run on its own) shares nothing.

    first_values: the first attention layer's values, (B, H_v, T, D_v), for `model.value_residual`.
    cache: set while decoding (`TransformerLM.decode`): the layers' decoding state, and the position of this pass's
    first token (`DecodeCache.start`); each attention then attends from its new tokens to its cached past."""

    first_values: torch.Tensor | None = None
    cache: DecodeCache | None = None


class DecodeCache:
    """The decoding state of every attention layer of one batch of sequences, kept between forward passes.

    `start` is how many tokens earlier passes have seen: the positions of this pass's tokens begin there. Each layer
    keeps its state under its own key (`state`/`extend`): a tuple of tensors with time on dimension -2 (keys and
    values, a latent, ...) or any fixed-size recurrent state. `numel_per_sequence()` counts what it holds."""

    def __init__(self) -> None:
        self.start = 0
        self.states: dict[Any, Any] = {}
        self.first_positions: dict[Any, int] = {}  # per key: the position of the first token its tensors still hold

    def extend(self, key: Any, new: tuple[torch.Tensor, ...], keep: int | None = None
               ) -> tuple[tuple[torch.Tensor, ...], int]:
        """Append this pass's tensors (time on dim -2) to the layer's; return (everything, for this pass to attend
        to, and the position of its first token). Afterwards only the last `keep` tokens stay (None: all)."""
        old = self.states.get(key)
        first = self.first_positions.get(key, self.start)
        full = new if old is None else tuple(torch.cat([a, b], dim=-2) for a, b in zip(old, new))
        kept = full
        if keep is not None:
            length = full[0].shape[-2]
            kept = tuple(x[..., max(0, length - keep):, :] for x in full)
            self.first_positions[key] = first + max(0, length - keep)
        else:
            self.first_positions[key] = first
        self.states[key] = kept
        return full, first

    def numel_per_sequence(self) -> int:
        """Numbers held for one sequence, over every layer (the batch dimension divided out)."""
        tensors = [t for state in self.states.values() for t in (state if isinstance(state, tuple) else (state,))]
        return sum(t.numel() // t.shape[0] for t in tensors)


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

    def after_step(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Called by the trainer after every optimizer step (e.g. to update a router's balancing bias from the
        step's expert loads). `reduce(t)` sums a tensor over the processes of a data-parallel run (the tensor
        itself in a plain run); every process calls it for the same tensors in the same order."""

    def metrics(self) -> dict[str, torch.Tensor]:
        """Statistics of the training steps since the last call, as scalar tensors on the device (kept there
        until the trainer reads them at a train row, so collecting them costs no host sync per step); logged as
        `train/<family>/<layer>/<name>` per layer and `train/<family>/<name>` (mean over layers, for names
        without a "/"). The default has none."""
        return {}


class PositionalEncoding(Component, nn.Module):
    """Acts at one place: the input embedding, a rotation of queries/keys, or an additive score bias. Every hook
    has a no-op default, so attention calls all three unconditionally. Built as `cls(spec, **knobs)`.

    Score biases are functions of the offset (query position - key position) only, so sparse attention asks for
    the bias of just the pairs it computes (`offset_bias`) instead of a full (H, T, T) matrix."""

    family = "pos_enc"
    acts_on: ClassVar[str | None] = None  # "input" | "rotary" | "bias" | None

    def __init__(self, spec: ModelSpec):
        super().__init__()

    def embed(self, h: torch.Tensor, start: int = 0) -> torch.Tensor:
        """h: (B, T, d_model) token embeddings at positions start … start+T-1 -> with position information added
        (`start` > 0 while decoding with a cache)."""
        return h

    def rotate(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x: (B, H, T, D) queries or keys at positions start … start+T-1 -> rotated by position."""
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
        self.d_model = spec.d_model
        self.dropout_p = spec.attention_dropout
        self.value_residual = spec.value_residual

    def __call__(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None
                 ) -> torch.Tensor:
        """`forward` in training and evaluation; `decode` while decoding (a context with a cache), so that every
        option, a user's too, decodes correctly whether or not it implements `decode`."""
        if context is not None and context.cache is not None:
            return self.decode(x, pos, context)
        return super().__call__(x, pos, context)

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

    def cache_numel(self, t: int) -> int:
        """Numbers of decoding state one sequence keeps in this layer after t tokens: t · kv_cache_per_token for a
        cache that grows with the sequence (an option with a window or a fixed state says its own); t · d_model for
        an option without its own `decode` (the default keeps the layer's inputs)."""
        if type(self).decode is Attention.decode:
            return t * self.d_model
        return t * self.kv_cache_per_token

    def decode(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext) -> torch.Tensor:
        """The layer's output for this pass's tokens x (B, T_new, d_model) at positions context.cache.start …,
        attending to its cached past (kept under `self.layer` in context.cache). This default is exact for any
        causal attention but keeps the inputs, not keys and values: it re-runs `forward` over the whole sequence
        so far (cache_numel then counts d_model per token). The built-in options replace it with a real cache."""
        if self.value_residual:
            raise NotImplementedError(f"{type(self).__name__} has no decode(): decoding with model.value_residual "
                                      "needs one (the default re-runs forward without the first layer's values)")
        (inputs,), _ = context.cache.extend(self.layer, (x,))
        return self.forward(inputs, pos, ForwardContext())[:, -x.shape[1]:]

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
