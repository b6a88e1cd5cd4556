"""Position-wise feed-forward variants. Gated variants are parameter-matched to the non-gated MLP of the same
`hidden_mult`: three matrices of width hidden·2/3 hold as many weights as two of width hidden."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components import FeedForward, ModelSpec


def gated_hidden_size(d_model: int, hidden_mult: float, multiple_of: int) -> int:
    """hidden = 2/3 · hidden_mult · d_model rounded to the nearest multiple of `multiple_of` (at least one)."""
    target = 2.0 / 3.0 * hidden_mult * d_model
    return max(multiple_of, multiple_of * round(target / multiple_of))


def _check_mult(hidden_mult: float) -> list[str]:
    return [f"ffn.hidden_mult={hidden_mult:g} must be > 0"] if hidden_mult <= 0 else []


class MLP(FeedForward):
    """d_model -> hidden -> activation -> d_model."""

    activation = staticmethod(F.relu)

    def __init__(self, spec: ModelSpec, hidden_mult: float = 4.0):
        super().__init__(spec)
        hidden = int(hidden_mult * spec.d_model)
        self.up = nn.Linear(spec.d_model, hidden, bias=spec.bias)
        self.down = nn.Linear(hidden, spec.d_model, bias=spec.bias)
        self.down.is_residual_output = True

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        return _check_mult(knobs["hidden_mult"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.activation(self.up(x)))


class ReluMLP(MLP):
    activation = staticmethod(F.relu)


class GeluMLP(MLP):
    activation = staticmethod(F.gelu)


class SiluMLP(MLP):
    """Non-gated SiLU (x·sigmoid(x)): separates the activation from the gating in SwiGLU (the CS336 ablation)."""

    activation = staticmethod(F.silu)


class GatedMLP(FeedForward):
    """down(activation(gate(x)) * up(x)) (Shazeer, 2020), hidden width from `gated_hidden_size`."""

    activation = staticmethod(F.silu)

    def __init__(self, spec: ModelSpec, hidden_mult: float = 4.0, multiple_of: int = 8):
        super().__init__(spec)
        hidden = gated_hidden_size(spec.d_model, hidden_mult, multiple_of)
        self.gate = nn.Linear(spec.d_model, hidden, bias=spec.bias)
        self.up = nn.Linear(spec.d_model, hidden, bias=spec.bias)
        self.down = nn.Linear(hidden, spec.d_model, bias=spec.bias)
        self.down.is_residual_output = True

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        problems = _check_mult(knobs["hidden_mult"])
        if knobs["multiple_of"] < 1:
            problems.append(f"ffn.multiple_of={knobs['multiple_of']} must be a positive integer")
        return problems

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.activation(self.gate(x)) * self.up(x))


class SwiGLU(GatedMLP):
    activation = staticmethod(F.silu)


class GeGLU(GatedMLP):
    activation = staticmethod(F.gelu)
