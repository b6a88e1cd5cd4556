"""`parallelize(model, tspec, device)`: the one place the trainer transforms the model for speed or scale,
outside model code, so model code stays single-device and never compiles itself.

Today it does two things: every component swaps in its compiled kernels (`Component.compile_kernels`, e.g. flex
attention for the sparse patterns on CUDA), and the whole model is `torch.compile`d when `train.compile` is true.
It is where the next such steps go, in this order (torchtitan's): activation checkpointing per block, compile per
block (instead of the whole model), then data parallelism (DDP / FSDP wrapping; `device` says where). Whatever it
returns is what the training step calls; it must share its parameters with `model`, because the optimizer,
checkpoints, evaluation and sampling use `model` itself.
"""

from __future__ import annotations

import torch
from torch import nn

from ablate.components import Component
from ablate.spec import TrainSpec


def parallelize(model: nn.Module, tspec: TrainSpec, device: str) -> nn.Module:
    """The module the training step calls (the model itself when there is nothing to wrap)."""
    for module in model.modules():
        if isinstance(module, Component):
            module.compile_kernels()
    return torch.compile(model) if tspec.compile else model
