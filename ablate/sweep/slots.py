"""Device slots for a sweep on one node (`hydra/launcher=gpus`): which devices the jobs may use, and how a job
takes a free place on one of them.

A slot is a device (`cuda:3`, or `cpu` for CPU slots) with room for `jobs_per_gpu` jobs at a time. A job holds one
place (slot i, unit k) for as long as it runs, through an exclusive `flock` on `<sweep dir>/.slots/<i>-<k>.lock`:
the kernel releases it when the job's process ends however it ends, so a crashed job never keeps its place and no
slot ever holds more jobs than it has room for — whichever process runs the job, whatever order they finish in.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

POLL_S = 0.05
LOG = "slots.jsonl"  # one line per job: its slot, unit, device, start and end (time.time())


class SlotError(ValueError):
    """A slot list that cannot be used, in one line naming the field and the fix."""


def resolve_slots(gpus, cuda_count: int) -> list[str]:
    """`hydra.launcher.gpus` -> one device string per slot. `auto`: every visible CUDA device; a list: GPU indices
    (`[0,1]`), device names (`cuda:2`) or `cpu` for CPU slots (`[cpu,cpu]` runs two CPU jobs side by side)."""
    if gpus == "auto":
        if cuda_count == 0:
            raise SlotError("hydra.launcher.gpus=auto found no CUDA device; name the slots, e.g. "
                            "hydra.launcher.gpus=[cpu,cpu] for two CPU jobs at a time")
        return [f"cuda:{i}" for i in range(cuda_count)]
    if isinstance(gpus, (int, str)):
        gpus = [gpus]
    slots = []
    for entry in gpus:
        text = str(entry)
        if text.isdigit():
            text = f"cuda:{text}"
        index = text.removeprefix("cuda:")
        if text == "cpu" or (text.startswith("cuda:") and index.isdigit() and int(index) < cuda_count):
            slots.append(text)
        else:
            have = f"{cuda_count} CUDA device(s) visible" if cuda_count else "no CUDA device visible"
            raise SlotError(f"hydra.launcher.gpus: {entry} is not a usable slot ({have}); use GPU indices, "
                            "cuda:N or cpu")
    if not slots:
        raise SlotError("hydra.launcher.gpus is empty; give at least one slot, or auto")
    return slots


@dataclass(frozen=True)
class SlotPool:
    """The places of a sweep's slots: `len(slots) * per_slot` jobs run at once, at most `per_slot` on each."""

    lock_dir: Path
    slots: tuple[str, ...]
    per_slot: int

    @property
    def capacity(self) -> int:
        return len(self.slots) * self.per_slot

    def cpu_threads(self, cores: int | None = None) -> int:
        """Threads for one job on a CPU slot: the cores shared evenly by the jobs that may run on CPU at once."""
        on_cpu = sum(s == "cpu" for s in self.slots) * self.per_slot
        return max(1, (cores or os.cpu_count() or 1) // max(on_cpu, 1))

    @contextmanager
    def place(self) -> Iterator[tuple[int, str]]:
        """Hold a free place until the block ends: yields (slot index, device). Waits while every place is held."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        while True:
            for unit in range(self.per_slot):  # fill every slot's first place before any slot's second
                for slot, device in enumerate(self.slots):
                    fd = os.open(self.lock_dir / f"{slot}-{unit}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                        continue
                    try:
                        yield slot, device
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                        os.close(fd)
                    return
            time.sleep(POLL_S)


def log_job(sweep_dir: Path, record: dict) -> None:
    """Append one job's slot record; one short write with O_APPEND, so lines from parallel jobs never interleave."""
    fd = os.open(Path(sweep_dir) / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
