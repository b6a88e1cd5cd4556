"""One process of a data-parallel test run, started by torchrun: `ablate.train` on the overrides given as JSON,
with faults the tests set by flags (a test-only hook: a fault in the config would change the config hash).

    torchrun --standalone --nproc_per_node=2 tests/training/ddp_worker.py '["model=tiny", ...]' [--raise-at N]
        [--nan-on-rank-1-at N]
"""

from __future__ import annotations

import argparse
import json

import torch

import ablate
from ablate.training import train
from ablate.training.distributed import rank


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("overrides")
    cli.add_argument("--raise-at", type=int, help="every process raises after this step (an interrupted run)")
    cli.add_argument("--nan-on-rank-1-at", type=int, help="rank 1's ffn=faulty turns its loss NaN at this step")
    args = cli.parse_args()

    def fault(state) -> None:
        if state.step == args.raise_at:
            raise RuntimeError(f"interrupted after step {state.step}")
        if rank() == 1 and args.nan_on_rank_1_at and state.step == args.nan_on_rank_1_at - 1:
            ffn = state.model.blocks[0].ffn
            ffn.nan_at_step = ffn.training_forwards + 1  # this process's next step only

    train(ablate.compose(json.loads(args.overrides)), hooks=[fault])
    # the run ended its process group itself: left to the interpreter's exit, gloo's teardown aborted a process now
    # and then after a completed run (exit code 1 with a completed summary.json)
    assert not torch.distributed.is_initialized(), "train() returned with its process group still open"


if __name__ == "__main__":
    main()
