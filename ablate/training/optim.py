"""AdamW with decay only on matrices of linear layers, and a linear-warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.spec import TrainSpec


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay the weight matrices of nn.Linear; never norms, biases or embeddings (a tied head is an embedding)."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay_ids = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Linear) and id(m.weight) not in embedding_ids
    }
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if id(p) in decay_ids else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, spec: TrainSpec, device: str) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        parameter_groups(model, spec.weight_decay),
        lr=spec.lr,
        betas=tuple(spec.betas),
        fused=device.startswith("cuda"),
    )


def lr_at(step: int, total_steps: int, spec: TrainSpec) -> float:
    """Linear warmup from lr/warmup to lr, then cosine decay to lr·min_lr_ratio at the last step."""
    warmup = int(spec.warmup_fraction * total_steps)
    if step < warmup:
        return spec.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - 1 - warmup)
    floor = spec.lr * spec.min_lr_ratio
    return floor + 0.5 * (spec.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))
