"""Normalization layers. Each derives from `ablate.components.Norm` and a torch norm, so its parameters keep torch's names."""

from __future__ import annotations

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
