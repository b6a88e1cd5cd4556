"""The pieces of one training step: the losses (cross-entropy plus the components' auxiliary losses), the means
logged since the previous row, and throughput net of the first step's one-time costs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ablate.training.device import autocast
from ablate.training.state import TrainState


@dataclass
class Losses:
    """`ce` is the next-token cross-entropy; `aux` the components' auxiliary losses by family (`aux_loss()`, e.g.
    expert load balancing) and the model's z-loss (`z_loss`). Training minimizes `total` = ce + every aux term, but
    `train/loss` logs `ce` only, so loss curves stay comparable between variants with and without auxiliary losses;
    each aux term is logged on its own as `train/aux/<family>` (`train/aux/z_loss`)."""

    ce: torch.Tensor
    aux: dict[str, torch.Tensor]

    @property
    def total(self) -> torch.Tensor:
        total = self.ce
        for loss in self.aux.values():
            total = total + loss
        return total

    def tensors(self) -> dict[str, torch.Tensor]:
        """The logged losses by name: train/loss and train/aux/<family> (scalars, on the device)."""
        return {"train/loss": self.ce, **{f"train/aux/{f}": loss for f, loss in self.aux.items()}}


def compute_losses(step_fn: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   device: str) -> Losses:
    """Forward `x` through `step_fn` (the parallelized model), cross-entropy against `y`, and the auxiliary losses:
    those the forward left in `model`'s components, and the model's own on the logits (`z_loss`)."""
    with autocast(device):
        logits = step_fn(x)
    aux = {**model.aux_losses(), **model.logit_losses(logits)}
    return Losses(F.cross_entropy(logits.float().flatten(0, 1), y.flatten()), aux)


def forward_backward(step_fn: torch.nn.Module, state: TrainState, x: torch.Tensor, y: torch.Tensor, device: str,
                     grad_accum: int, grad_clip: float) -> dict[str, float]:
    """Gradients of the batch's mean total loss, accumulated over `grad_accum` equal micro-batches (each one's loss
    divided by grad_accum, so the gradient is the full batch's), clipped to norm `grad_clip` if > 0; returns the
    logged values, each the mean over the micro-batches."""
    state.optimizer.zero_grad(set_to_none=True)
    logged: dict[str, torch.Tensor] = {}
    for x_micro, y_micro in zip(x.chunk(grad_accum), y.chunk(grad_accum)):
        losses = compute_losses(step_fn, state.model, x_micro, y_micro, device)
        (losses.total / grad_accum).backward()
        for key, value in losses.tensors().items():
            logged[key] = logged[key] + value.detach() / grad_accum if key in logged else value.detach() / grad_accum
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), grad_clip)
    return {key: value.item() for key, value in logged.items()}  # also synchronizes: the step's timing is real


def finite(values: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in values.values())


class LossMeter:
    """Each logged loss averaged over the steps since the previous train row."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.values.setdefault(key, []).append(value)

    def means(self) -> dict[str, float]:
        """The means, and a fresh start for the next row."""
        means = {key: sum(v) / len(v) for key, v in self.values.items()}
        self.values = {}
        return means


class Throughput:
    """Tokens per second of training time, from the end of the first step of this process on: that step pays
    one-time costs (allocator, kernels, compile) and is not throughput."""

    def __init__(self, state: TrainState):
        self.start, self.tokens, self.time_s = state.step, state.tokens, state.time_s

    def update(self, state: TrainState) -> None:
        if state.step == self.start + 1:
            self.tokens, self.time_s = state.tokens, state.time_s

    def rate(self, state: TrainState) -> float:
        seconds = state.time_s - self.time_s
        return (state.tokens - self.tokens) / seconds if seconds > 0 else 0.0
