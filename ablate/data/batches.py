"""Batches of (input, target) windows drawn from a token split, deterministic from a seed.

`data.order=seed` (default): the run's `seed` and `data.seed` together pick the order (`order_seed`), so seed k of
every variant sees the same batches — a paired design, which compare tests with the paired t-test — and the seeds
of one variant differ in data order as well as initialisation. `fixed`: data.seed alone, one order for every seed
(how runs were recorded before data.order existed).

`data.sampling=random` (default): every batch is `batch_size` uniformly drawn windows. `sequential`: consecutive
non-overlapping windows in order, pass after pass over the split. Both keep their position in `state()`, which
goes into checkpoints, so a resumed run sees the batches an uninterrupted one would have.
"""

from __future__ import annotations

import numpy as np
import torch


def windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) inputs and the (B, T) next-token targets for windows beginning at `starts`."""
    rows = tokens[np.asarray(starts, dtype=np.int64)[:, None] + np.arange(block_size + 1)]  # one gather
    data = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    return data[:, :-1], data[:, 1:]


ORDERS = ("seed", "fixed")


def order_seed(data_seed: int, run_seed: int, order: str) -> int | list[int]:
    """What seeds the order of training batches (see the module docstring)."""
    if order == "fixed":
        return int(data_seed)  # exactly the stream runs used before data.order existed
    return [int(data_seed), int(run_seed)]  # numpy's SeedSequence mixes both: each pair its own stream


class RandomWindows:
    def __init__(self, tokens: np.ndarray, batch_size: int, block_size: int, seed: int | list[int]):
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = self.rng.integers(0, len(self.tokens) - self.block_size - 1, size=self.batch_size, endpoint=True)
        return windows(self.tokens, starts, self.block_size)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class SequentialWindows:
    """Windows at offset, offset + T, offset + 2T, ... Every pass after the first starts at a fresh seeded offset
    in [0, T), so window boundaries fall elsewhere each time through the data."""

    def __init__(self, tokens: np.ndarray, batch_size: int, block_size: int, seed: int | list[int]):
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.rng = np.random.default_rng(seed)
        self.position, self.passes = 0, 0

    def _new_pass(self) -> None:
        largest = min(self.block_size - 1, len(self.tokens) - self.block_size - 1)
        self.position = int(self.rng.integers(0, largest, endpoint=True))
        self.passes += 1

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = np.empty(self.batch_size, dtype=np.int64)
        for row in range(self.batch_size):
            if self.position + self.block_size + 1 > len(self.tokens):
                self._new_pass()
            starts[row] = self.position
            self.position += self.block_size
        return windows(self.tokens, starts, self.block_size)

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "position": self.position, "passes": self.passes}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.position, self.passes = state["position"], state["passes"]


SAMPLERS = {"random": RandomWindows, "sequential": SequentialWindows}


def fixed_eval_batches(
    tokens: np.ndarray, n_batches: int, batch_size: int, block_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same val windows for every run and every eval: evenly spaced over the split, so runs compare exactly."""
    n = n_batches * batch_size
    starts = np.linspace(0, len(tokens) - block_size - 1, num=n).astype(np.int64)
    return [windows(tokens, starts[i : i + batch_size], block_size) for i in range(0, n, batch_size)]
