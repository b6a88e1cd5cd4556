"""Normalization layers, built by name."""

from __future__ import annotations

from torch import nn

from ablate.registry import Registry
from ablate.spec import ModelSpec

NORM = Registry("norm")


def _check_eps(eps: float) -> list[str]:
    return [f"norm.eps={eps} must be > 0"] if eps <= 0 else []


@NORM.register("layernorm")
class LayerNorm(nn.LayerNorm):
    def __init__(self, spec: ModelSpec, eps: float = 1e-5):
        super().__init__(spec.d_model, eps=eps, bias=spec.bias)

    @classmethod
    def check(cls, spec: ModelSpec, eps: float = 1e-5) -> list[str]:
        return _check_eps(eps)


@NORM.register("rmsnorm")
class RMSNorm(nn.RMSNorm):
    """x / sqrt(mean(x²) + eps) · g (Zhang & Sennrich, 2019): no centring, no bias."""

    def __init__(self, spec: ModelSpec, eps: float = 1e-6):
        super().__init__(spec.d_model, eps=eps)

    @classmethod
    def check(cls, spec: ModelSpec, eps: float = 1e-6) -> list[str]:
        return _check_eps(eps)


@NORM.register("none")
class NoNorm(nn.Identity):
    """The no-normalization ablation: identity, no parameters, in every place a norm would be (pre, post, final).
    Training may diverge at high learning rates; the trainer then ends the run as diverged."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
