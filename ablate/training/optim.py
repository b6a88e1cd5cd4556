"""The optimizer (`optim` group) and the learning-rate schedule.

adamw: AdamW with weight decay by tensor rank (never on embeddings). muon: Muon (torch.optim.Muon) on the 2-D
matrices inside the blocks, AdamW on the rest, stepping together as one optimizer. The schedule (linear warmup +
cosine) is a multiple of train.lr; each parameter group follows it scaled to its own peak (`lr_scale`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.spec import TrainSpec


def decays(p: nn.Parameter, embedding_ids: set[int]) -> bool:
    """Weight decay by rank: matrices and higher-rank weights (e.g. stacked expert weights) decay, except embedding
    tables; vectors (norm gains, biases) and scalars never do."""
    return p.dim() >= 2 and id(p) not in embedding_ids


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: what `decays` (every parameter of rank >= 2 but the nn.Embedding weights, a tied head
    included) and the rest (norms, biases, gains, embeddings). Whatever module holds a parameter, its rank decides."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if decays(p, embedding_ids) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, spec: TrainSpec, device: str) -> torch.optim.Optimizer | Optimizers:
    if spec.optim.name == "muon":
        return muon_with_adamw(model, spec, device)
    return adamw(parameter_groups(model, spec.weight_decay), spec, device)


def adamw(groups: list[dict], spec: TrainSpec, device: str) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas), fused=device.startswith("cuda"))


def muon_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The hidden matrices Muon trains: every 2-D parameter inside the blocks but embedding tables. The token
    embedding, the output head, positional tables, norms, gains, biases and weights of other ranks stay on AdamW."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [p for p in model.blocks.parameters() if p.requires_grad and p.dim() == 2 and id(p) not in embedding_ids]


def muon_with_adamw(model: nn.Module, spec: TrainSpec, device: str) -> Optimizers:
    """Muon on `muon_matrices`, AdamW (`parameter_groups`) on every other parameter."""
    matrices = muon_matrices(model)
    chosen = {id(p) for p in matrices}
    rest = [{**g, "params": [p for p in g["params"] if id(p) not in chosen]}
            for g in parameter_groups(model, spec.weight_decay)]
    rest = [g for g in rest if g["params"]]
    o = spec.optim
    lr = o.lr if o.lr is not None else spec.lr
    parts = {"adamw": adamw(rest, spec, device)} if rest else {}
    if matrices:
        parts["muon"] = torch.optim.Muon(matrices, lr=lr, weight_decay=spec.weight_decay, momentum=o.momentum,
                                         nesterov=o.nesterov, ns_steps=o.ns_steps, adjust_lr_fn=o.adjust_lr)
        for group in parts["muon"].param_groups:
            group["lr_scale"] = lr / spec.lr  # the schedule is train.lr's; Muon's peak is its own
    return Optimizers(**parts)


class Optimizers:
    """Several optimizers over disjoint parameters, stepped as one: what the trainer, the divergence guard and
    checkpoints use of an optimizer (param_groups, zero_grad, step, state_dict)."""

    def __init__(self, **parts: torch.optim.Optimizer):
        self.parts = parts

    @property
    def param_groups(self) -> list[dict]:
        return [group for part in self.parts.values() for group in part.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for part in self.parts.values():
            part.step()

    def state_dict(self) -> dict:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state[name])


def set_lr(optimizer: torch.optim.Optimizer | Optimizers, lr: float) -> float:
    """Every group at `lr` (train.lr's schedule) times its `lr_scale` (1 unless a part has its own peak lr)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr


def lr_at(step: int, total_steps: int, spec: TrainSpec) -> float:
    """Linear warmup from lr/warmup to lr, then cosine decay to lr·min_lr_ratio at the last step."""
    warmup = int(spec.warmup_fraction * total_steps)
    if step < warmup:
        return spec.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - 1 - warmup)
    floor = spec.lr * spec.min_lr_ratio
    return floor + 0.5 * (spec.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))
