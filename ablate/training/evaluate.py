"""Validation: the same fixed val batches at every evaluation of every run, so runs compare exactly."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ablate.training import distributed
from ablate.training.device import autocast


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, device: str) -> dict[str, float]:
    """Mean next-token loss, perplexity and accuracy over the fixed val batches; targets of -100 (data=mqar: all but
    the query positions) count for neither, as cross_entropy's default ignore_index already does for the loss."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast(device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
        counted = y != -100
        correct += ((logits.argmax(-1) == y) & counted).sum().item()
        count += counted.sum().item()
    model.train()
    loss_sum, correct, count = distributed.total(loss_sum, correct, count)  # each process evaluated its share
    loss = loss_sum / count
    return {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0)), "val/acc": correct / count}


class Evaluator:
    """`evaluator(model)` -> val/loss, val/ppl, val/acc, and val/recall_acc when the data reports recall
    (data=mqar: val/acc counts the query positions only, i.e. it is the recall accuracy). In a run of N processes
    each evaluates every N-th batch and the sums are added up: the same numbers as one process."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]], device: str, reports_recall: bool = False):
        self.batches, self.device, self.reports_recall = distributed.shard(batches), device, reports_recall

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        row = evaluate(model, self.batches, self.device)
        if self.reports_recall:
            row["val/recall_acc"] = row["val/acc"]
        return row
