"""Normalization layers. Each derives from `ablate.components.Norm` and a torch norm, so its parameters keep torch's names."""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.components import ModelSpec, Norm


def _check_eps(eps: float) -> list[str]:
    return [f"norm.eps={eps:g} must be > 0"] if eps <= 0 else []


class LayerNorm(Norm, nn.LayerNorm):
    def __init__(self, spec: ModelSpec, eps: float = 1e-5):
        super().__init__(spec.d_model, eps=eps, bias=spec.bias)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        return _check_eps(knobs["eps"])


class RMSNorm(Norm, nn.RMSNorm):
    """x / sqrt(mean(x²) + eps) · g (Zhang & Sennrich, 2019): no centring, no bias."""

    def __init__(self, spec: ModelSpec, eps: float = 1e-6):
        super().__init__(spec.d_model, eps=eps)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        return _check_eps(knobs["eps"])


class NoNorm(Norm, nn.Identity):
    """The no-normalization ablation: identity, no parameters, in every place a norm would be (pre, post, final).
    Training may diverge at high learning rates; the trainer then ends the run as diverged."""

    def __init__(self, spec: ModelSpec):
        super().__init__()


class DynamicTanh(Norm):
    """DyT(x) = γ ⊙ tanh(α·x) + β (Zhu et al. 2025, "Transformers without Normalization", arXiv 2503.10622): an
    element-wise squashing in place of a norm, no statistics over channels. α is one learnable scalar (initialized
    to `alpha_init`, 0.5 as in the paper), γ per channel (ones), β per channel (zeros) only with model.bias=true,
    as LayerNorm's β here. Parameters: 1 + d_model (+ d_model with bias); FLOPs: element-wise, not counted (as for
    the other norms)."""

    def __init__(self, spec: ModelSpec, alpha_init: float = 0.5):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.weight = nn.Parameter(torch.ones(spec.d_model))
        self.bias = nn.Parameter(torch.zeros(spec.d_model)) if spec.bias else None

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        alpha = knobs["alpha_init"]
        return [] if math.isfinite(alpha) and alpha > 0 else [f"norm.alpha_init={alpha} must be a finite number > 0 "
                                                              f"(the paper: 0.5)"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(self.alpha * x) * self.weight
        return y + self.bias if self.bias is not None else y
