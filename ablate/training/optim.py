"""AdamW with weight decay by tensor rank (never on embeddings), and a linear-warmup + cosine learning-rate
schedule."""

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


def make_optimizer(model: nn.Module, spec: TrainSpec, device: str) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        parameter_groups(model, spec.weight_decay),
        lr=spec.lr,
        betas=tuple(spec.betas),
        fused=device.startswith("cuda"),
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def lr_at(step: int, total_steps: int, spec: TrainSpec) -> float:
    """Linear warmup from lr/warmup to lr, then cosine decay to lr·min_lr_ratio at the last step."""
    warmup = int(spec.warmup_fraction * total_steps)
    if step < warmup:
        return spec.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - 1 - warmup)
    floor = spec.lr * spec.min_lr_ratio
    return floor + 0.5 * (spec.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))
