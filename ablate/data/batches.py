"""Batches of (input, target) windows drawn from a token split, deterministic from a seed."""

from __future__ import annotations

import numpy as np
import torch


def windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) inputs and the (B, T) next-token targets for windows beginning at `starts`."""
    rows = np.stack([np.asarray(tokens[s : s + block_size + 1], dtype=np.int64) for s in starts])
    data = torch.from_numpy(rows)
    return data[:, :-1], data[:, 1:]


class RandomWindows:
    """Random windows: every batch is `batch_size` uniformly drawn start positions. The generator state is part of
    a checkpoint so a resumed run sees the same batches as an uninterrupted one."""

    def __init__(self, tokens: np.ndarray, batch_size: int, block_size: int, seed: int):
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.rng.integers(0, len(self.tokens) - self.block_size - 1, size=self.batch_size, endpoint=True)
        return windows(self.tokens, starts, self.block_size)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def fixed_eval_batches(
    tokens: np.ndarray, n_batches: int, batch_size: int, block_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same val windows for every run and every eval: evenly spaced over the split, so runs compare exactly."""
    n = n_batches * batch_size
    starts = np.linspace(0, len(tokens) - block_size - 1, num=n).astype(np.int64)
    return [windows(tokens, starts[i : i + batch_size], block_size) for i in range(0, n, batch_size)]
