"""The pieces of one training step: the losses (cross-entropy plus the components' auxiliary losses), the means
logged since the previous row, and throughput net of the first step's one-time costs."""

from __future__ import annotations

import contextlib
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
                     grad_accum: int, grad_clip: float) -> dict[str, torch.Tensor]:
    """Gradients of the batch's mean total loss, accumulated over `grad_accum` equal micro-batches (each one's loss
    divided by grad_accum, so the gradient is the full batch's), clipped to norm `grad_clip` if > 0; returns the
    logged values, each the mean over the micro-batches, as tensors on the device (reading them is a host sync,
    which the loop does only where it logs). Under DDP (`step_fn.no_sync`) the gradients are averaged over the
    processes once per step, in the last micro-batch's backward."""
    state.optimizer.zero_grad(set_to_none=True)
    logged: dict[str, torch.Tensor] = {}
    for i, (x_micro, y_micro) in enumerate(zip(x.chunk(grad_accum), y.chunk(grad_accum))):
        defer_sync = i < grad_accum - 1 and hasattr(step_fn, "no_sync")
        with step_fn.no_sync() if defer_sync else contextlib.nullcontext():
            losses = compute_losses(step_fn, state.model, x_micro, y_micro, device)
            (losses.total / grad_accum).backward()
        for key, value in losses.tensors().items():
            logged[key] = logged[key] + value.detach() / grad_accum if key in logged else value.detach() / grad_accum
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), grad_clip)
    return logged


class DivergenceGuard:
    """Notes, on the device, the first step whose logged losses are not finite, without a host sync. With a fused
    optimizer it also skips every update from that step on (the optimizer's `found_inf` flag, as torch's GradScaler
    uses it), so the loop may read the flag only at its sync points (log, eval, checkpoint, last step) and still end
    the run at the exact step with the weights from before it. An unfused optimizer has no such flag: its loop reads
    the flag every step, before the update (on a CPU, where the unfused optimizer is used, a read costs nothing)."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: str):
        self.optimizer = optimizer
        self.deferred = all(group.get("fused") for group in optimizer.param_groups)
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)
        self.bad_values: dict[str, torch.Tensor] = {}

    def record(self, step: int, values: dict[str, torch.Tensor]) -> None:
        newly_bad = ~torch.stack([torch.isfinite(v) for v in values.values()]).all() & (self.first_bad == 0)
        self.first_bad = torch.where(newly_bad, step, self.first_bad)
        self.bad_values = {k: torch.where(newly_bad, v, self.bad_values.get(k, v)) for k, v in values.items()}
        if self.deferred:
            self.optimizer.found_inf = (self.first_bad > 0).float()

    def diverged(self) -> tuple[int, dict[str, float]] | None:
        """(the first non-finite step, its logged values), or None. Reads the device."""
        step = int(self.first_bad)
        return (step, {k: float(v) for k, v in self.bad_values.items()}) if step else None


class LossMeter:
    """Each logged loss averaged over the steps since the previous train row; summed on the device, read once."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor | float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        """The means, and a fresh start for the next row."""
        means = {key: float(total) / self.counts[key] for key, total in self.sums.items()}
        self.sums, self.counts = {}, {}
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
