"""Seed ensembles (train.ensemble_seeds) against the same seeds run one after another, through the trainer.

    python benchmarks/ensemble.py                                       # model=tiny and model=small, K=3, CPU
    python benchmarks/ensemble.py --configs "model=small dropout=off" --seeds 0,1,2,3 --steps 20 --threads 2

single: `ablate.train` of seed 0 alone: its summary's perf/tokens_per_s (training steps only, from the end of the
    first step; evaluation, checkpoints and the sample excluded).
ensemble: one job with train.ensemble_seeds=<seeds>: a member's perf/tokens_per_s is the job's tokens/s (each
    member's time is its share of the job's step time), i.e. all members' tokens over the job's training time.
ratio: ensemble ÷ single: how much faster the seeds train together than one after another (> 1: faster). The two
    alternate --repeats times and the best of each is kept, so load from other processes hits both alike. The path
    the ensemble took (stacked, or members one after another) is printed with it.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import tempfile

import torch


def tokens_per_s(overrides: list[str], steps: int) -> tuple[float, str]:
    import ablate
    from ablate.training import train

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # the path the ensemble took
    logging.getLogger("ablate.training.ensemble").addHandler(handler)
    logging.getLogger("ablate.training.ensemble").setLevel(logging.INFO)
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            cfg = ablate.compose([*overrides, "logger=none", f"train.max_steps={steps}", f"train.eval_every={steps}",
                                  "train.eval_batches=1", "train.sample.tokens=0", "train.inference.decode_tokens=0",
                                  "train.checkpoint_every=null", "train.keep_checkpoints=none", f"out_dir={run_dir}"])
            summary = train(cfg, overrides)
    finally:
        logging.getLogger("ablate.training.ensemble").removeHandler(handler)
    summary = summary["members"][0] if "members" in summary else summary
    path = next((r.split(": ", 1)[1].split(", ")[0] for r in records if r.startswith("ensemble of seeds")), "")
    return float(summary["perf/tokens_per_s"]), path


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--configs", nargs="+", default=["model=tiny", "model=small"],
                     help="each a space-separated override list (device=cpu is added)")
    cli.add_argument("--seeds", default="0,1,2")
    cli.add_argument("--steps", type=int, default=20)
    cli.add_argument("--repeats", type=int, default=2)
    cli.add_argument("--threads", type=int, default=2, help="torch threads (OMP_NUM_THREADS), the same for both")
    args = cli.parse_args()
    torch.set_num_threads(args.threads)
    print(f"K={len(args.seeds.split(','))} seeds [{args.seeds}], {args.steps} steps, {args.threads} threads, "
          f"best of {args.repeats}")
    print(f"{'config':40s} {'single tok/s':>13s} {'ensemble tok/s':>15s} {'ratio':>6s}  path")
    for config in args.configs:
        overrides = [*shlex.split(config), "device=cpu"]
        single, ensemble, path = 0.0, 0.0, ""
        for _ in range(args.repeats):
            single = max(single, tokens_per_s([*overrides, "seed=0"], args.steps)[0])
            rate, path = tokens_per_s([*overrides, f"train.ensemble_seeds=[{args.seeds}]"], args.steps)
            ensemble = max(ensemble, rate)
        print(f"{config:40s} {single:13,.0f} {ensemble:15,.0f} {ensemble / single:6.2f}  {path}")


if __name__ == "__main__":
    main()
