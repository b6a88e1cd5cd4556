"""One run in N processes (data parallel): which process this is, the process group, and the few collective steps
the trainer takes. With one process (no torchrun, no multi-task SLURM job) every function here is the identity or
does nothing, so a plain run computes exactly what it computed before.

Who starts the processes: `torchrun --nproc_per_node=N` (RANK, WORLD_SIZE, LOCAL_RANK in the environment), or a
SLURM / submitit job with N tasks (hydra/launcher=slurm_ddp: the job's task rank, rendezvous on its first node).

The contract the trainer keeps: every process draws the same global batch (`train.batch_size`) and trains on its
contiguous share of it, so N processes take the steps one process takes; logged losses are averaged over the
processes, so every process reads the same numbers and ends (or diverges) at the same step; rank 0 alone writes
the run dir, checkpoints and W&B (the others read the run dir, e.g. the checkpoint they resume from, and write
nothing).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ablate.track import RunFiles

T = TypeVar("T")


def _submitit_tasks() -> int:
    """How many tasks the submitit job this process runs in has (1 outside one)."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return 1
    import submitit

    return submitit.JobEnvironment().num_tasks


def _env() -> tuple[int, int, int]:
    """(rank, world size, local rank) that the launcher gave this process."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:  # torchrun, or a submitit job already exported
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if _submitit_tasks() > 1:
        import submitit

        job = submitit.JobEnvironment()
        return job.global_rank, job.num_tasks, job.local_rank
    return 0, 1, 0


def world_size() -> int:
    return _env()[1]


def rank() -> int:
    return _env()[0]


def is_main() -> bool:
    """Whether this process writes (rank 0; the only process of a plain run)."""
    return rank() == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def start(device: str) -> str:
    """Join the run's process group (once per process; NCCL on CUDA, gloo elsewhere) and return the device this
    process trains on: its own GPU (cuda:LOCAL_RANK) when the run asks for `cuda`. A plain run: `device` as is."""
    rank_, world, local = _env()
    if world == 1:
        return device
    if device == "cuda":
        device = f"cuda:{local}"
    if not active():
        if "MASTER_ADDR" not in os.environ:  # a submitit task: rendezvous on the job's first node
            import submitit.helpers

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", rank=rank_, world_size=world)
        atexit.register(end_group)  # a run that raised ends its group on the way out
    return device


def share(value: T) -> T:
    """Rank 0's `value` on every process (what the others pass is ignored)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(compute: Callable[[], T]) -> T:
    """`compute()` on rank 0 (a decision that reads the run dir), its result on every process."""
    return share(compute() if is_main() else None)


def main_first(compute: Callable[[], T]) -> T:
    """`compute()` on rank 0, then on the others (e.g. loading data: rank 0 builds the token cache, they read it)."""
    if not active():
        return compute()
    if is_main():
        result = compute()
        dist.barrier()
        return result
    dist.barrier()
    return compute()


def barrier() -> None:
    if active():
        dist.barrier()


def end_group() -> None:
    if active():
        gc.collect()  # the run's DDP wrapper (its reducer holds the group) goes first
        dist.destroy_process_group()


def finish() -> None:
    """The end of a run: every process waits for the others (rank 0's last writes), then ends the process group
    before the interpreter exits. Left to the exit, gloo's teardown raced with the other process's and aborted
    one process now and then (SIGABRT, exit code 1, after a completed run)."""
    barrier()
    end_group()


def gather(value: Any) -> list[Any]:
    """Every process's `value`, in rank order ([value] for a plain run)."""
    if not active():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def share_of(batch: torch.Tensor) -> torch.Tensor:
    """This process's contiguous share of a global batch (rows rank·B/N … (rank+1)·B/N)."""
    if not active():
        return batch
    size = batch.shape[0] // dist.get_world_size()
    return batch[rank() * size:(rank() + 1) * size]


def shard(items: list[T]) -> list[T]:
    """This process's items of a list dealt round-robin (e.g. the val batches)."""
    return items[rank()::dist.get_world_size()] if active() else items


def mean(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each scalar averaged over the processes, on the device (one all-reduce, no host sync on NCCL)."""
    if not active() or not values:
        return values
    stacked = torch.stack([v.float() for v in values.values()])
    dist.all_reduce(stacked)
    stacked /= dist.get_world_size()
    return dict(zip(values, stacked.unbind()))


def summed(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the processes, on the device (the tensor itself for a plain run)."""
    if not active():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor


def total(*numbers: float) -> tuple[float, ...]:
    """Each number summed over the processes (float64)."""
    if not active():
        return numbers
    summed = torch.tensor(numbers, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        summed = summed.cuda()
    dist.all_reduce(summed)
    return tuple(summed.tolist())


def seed_rank(seed: int) -> None:
    """A stream of random numbers (dropout) of its own for each process after the first, from (seed, rank): equal
    streams would drop the same units in every process's share of the batch. Rank 0 keeps the run's stream."""
    if active() and not is_main():
        torch.manual_seed(int(np.random.SeedSequence([int(seed), rank()]).generate_state(1)[0]))


class ReadOnlyFiles(RunFiles):
    """Rank 0's run dir as the other processes see it: they read it (a summary, the checkpoint they resume from)
    and every write is dropped, so no process but rank 0 leaves anything on disk."""

    def __init__(self, run_dir: str | os.PathLike):  # (no mkdir)
        self.dir = Path(run_dir)
        self.checkpoints = self.dir / "checkpoints"
        self._metrics = None

    def lock(self):
        return contextlib.nullcontext()  # rank 0 holds it for the run

    def clear(self) -> None:
        pass

    def truncate_metrics(self, last_step: int) -> None:
        pass

    def write_config(self, cfg, overrides: list[str]) -> None:
        pass

    def log(self, row: dict[str, Any]) -> None:
        pass

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass

    def write_text(self, name: str, text: str) -> None:
        pass
