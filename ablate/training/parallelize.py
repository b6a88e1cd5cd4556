"""`parallelize(model, tspec, device)`: the one place the trainer transforms the model for speed or scale,
outside model code, so model code stays single-device and never compiles itself.

In torchtitan's order: every component swaps in its compiled kernels (`Component.compile_kernels`, e.g. flex
attention for the sparse patterns on CUDA); each block is `torch.compile`d when `train.compile` resolves to true
(auto: on CUDA), into a training view of the model, so evaluation and cached decoding stay eager (decoding's
growing shapes would recompile); then, in a run of N processes, DistributedDataParallel wraps that view
(gradients averaged over the processes during backward). Activation checkpointing per block would go before the
compile step, FSDP in place of DDP. Whatever it returns is what the training step calls; it shares its parameters
with `model`, because the optimizer, checkpoints, evaluation and sampling use `model` itself.
"""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ablate.components import Component
from ablate.spec import TrainSpec
from ablate.training import distributed

DDP_KEYWORDS = inspect.signature(DistributedDataParallel.__init__).parameters


def compiles(tspec: TrainSpec, device: str) -> bool:
    """What train.compile means on `device`: auto compiles on CUDA only (on a CPU, compiling a small model costs
    more time than it saves, and needs a C++ compiler)."""
    setting = str(tspec.compile).lower()
    return device.startswith("cuda") if setting == "auto" else setting == "true"


def parallelize(model: nn.Module, tspec: TrainSpec, device: str) -> nn.Module:
    """The module the training step calls (the model itself when there is nothing to wrap)."""
    unused = unused_parameters(model, device) if distributed.active() else []
    for module in model.modules():
        if isinstance(module, Component):
            module.compile_kernels()
    step_module = with_compiled_blocks(model) if compiles(tspec, device) else model
    if not distributed.active():
        return step_module
    # every buffer is a constant built from the spec (position tables, ALiBi slopes, BigBird's seeded blocks), equal
    # in every process: nothing to broadcast before each forward (the keyword's name changed in torch 2.13)
    no_buffer_sync = {"forward_sync_buffers" if "forward_sync_buffers" in DDP_KEYWORDS else "broadcast_buffers": False}
    return DistributedDataParallel(step_module, device_ids=[torch.device(device).index] if device.startswith("cuda")
                                   else None, find_unused_parameters=bool(unused), **no_buffer_sync)


def with_compiled_blocks(model: nn.Module) -> nn.Module:
    """A shallow copy of `model` (the same parameters, buffers and submodules) whose blocks are compiled: one graph
    per block, compiled once and reused by every block of the same shape, instead of one graph of the whole model."""
    view = copy.copy(model)
    view._modules = dict(model._modules)
    view._modules["blocks"] = nn.ModuleList(torch.compile(block) for block in model.blocks)
    return view


def unused_parameters(model: nn.Module, device: str) -> list[str]:
    """The parameters no gradient reaches in one training forward and backward (through the cross-entropy and the
    auxiliary losses) of a copy of `model` on a probe batch, random numbers put back after: the model itself and
    the run's random streams are as they were. DDP must be told when there are any: otherwise it waits for their
    gradients forever."""
    from ablate.training.step import compute_losses

    probe = copy.deepcopy(model)
    ids = torch.zeros(1, probe.spec.block_size, dtype=torch.long, device=device)
    with torch.random.fork_rng(devices=[torch.device(device)] if device.startswith("cuda") else []):
        compute_losses(probe, probe, ids, ids, device).total.backward()
    return [name for name, p in probe.named_parameters() if p.requires_grad and p.grad is None]
