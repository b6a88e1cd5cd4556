"""A variant from outside the project: Primer's squared ReLU FFN (So et al., 2021), relu(x)² in place of relu."""

import torch
from torch import nn

from ablate.components import FeedForward, ModelSpec


class ReluSquared(FeedForward):
    def __init__(self, spec: ModelSpec, hidden_mult: float = 4.0):  # the knobs: typed, defaults written once
        super().__init__(spec)
        hidden = int(hidden_mult * spec.d_model)
        self.up = nn.Linear(spec.d_model, hidden, bias=spec.bias)
        self.down = nn.Linear(hidden, spec.d_model, bias=spec.bias)
        self.down.is_residual_output = True  # scaled init, like every residual output projection

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        return [] if knobs["hidden_mult"] > 0 else [f"ffn.hidden_mult={knobs['hidden_mult']} must be > 0"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)) ** 2)
