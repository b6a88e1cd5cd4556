"""Everything a resumed run needs to continue exactly where an uninterrupted one would be, saved and loaded in one
call each: model, optimizer, step, tokens seen, training time, RNG states and the batch sampler's position."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ablate.training import distributed
from ablate.training.checkpoint import read_checkpoint, write_checkpoint


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    """`batches` is the training batch sampler (`next()`, `state()`, `load_state()`); its state is plain values
    (the numpy bit generator's state is a dict of ints and strings), so the file loads with weights_only."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: Any
    step: int = 0  # optimizer steps taken
    tokens: int = 0  # training tokens seen
    time_s: float = 0.0  # training time (evaluation, checkpoints and sampling excluded)

    def advance(self, tokens: int, seconds: float) -> None:
        """Count one optimizer step over `tokens` tokens that took `seconds`."""
        self.step += 1
        self.tokens += tokens
        self.time_s += seconds

    def state_dict(self) -> dict[str, Any]:
        """Every process of a data-parallel run calls it (its RNG states are gathered: each one draws its own
        dropout), rank 0's RNG state under `rng` as in a one-process run."""
        rngs = distributed.gather(rng_state())
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                "tokens": self.tokens, "time_s": self.time_s, "rng": rngs[0], "batches": self.batches.state(),
                **({"rng_by_rank": rngs} if len(rngs) > 1 else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state(state["batches"])
        rngs = state.get("rng_by_rank") or [state["rng"]]
        set_rng_state(rngs[min(distributed.rank(), len(rngs) - 1)])
        if distributed.rank() >= len(rngs):  # more processes than the run had: a stream of its own from here on
            distributed.seed_rank(int(state["step"]))
        self.step, self.tokens, self.time_s = int(state["step"]), int(state["tokens"]), float(state["time_s"])

    def save(self, path: Path, **extra: Any) -> None:
        """Atomically write this state plus `extra` (plain values: the config, the summary snapshot); every process
        calls it, rank 0 writes."""
        payload = self.state_dict()
        if distributed.is_main():
            write_checkpoint(path, {**payload, **extra})

    def load(self, path: Path) -> dict[str, Any]:
        """Resume from the checkpoint at `path` (CheckpointError if it is unsafe or corrupt); returns the whole
        checkpoint, `extra` included."""
        checkpoint = read_checkpoint(path)
        self.load_state_dict(checkpoint)
        return checkpoint
