"""MQAR recall accuracy (Zoology, Arora et al. 2023) of attention variants, each trained once through `ablate.run`.

    python benchmarks/recall.py                                  # mha gla deltanet gated_deltanet mamba2 linear
    python benchmarks/recall.py --variants mha gla --seq-len 128 --kv-pairs 16 --steps 2000

model=tiny, pos_enc=rope for softmax attention (the recurrent variants refuse RoPE and run with pos_enc=none: their
gates and state carry position), data=mqar with a small vocabulary so the run fits a CPU in minutes, logger=none.
Prints one markdown row per variant: final/val_recall_acc (accuracy at the query positions over the val set's
eval batches), final val loss and the run's wall time. One seed: the gap between variants is what matters, not the
third digit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ["mha", "gla", "deltanet", "gated_deltanet", "mamba2", "linear"]
SOFTMAX = {"mha", "mqa", "gqa", "local", "bigbird", "mla", "diff"}


def train(variant: str, args: argparse.Namespace, out: Path) -> dict:
    overrides = [
        "data=mqar", f"data.seq_len={args.seq_len}", f"data.num_kv_pairs={args.kv_pairs}",
        f"data.vocab_size={args.vocab}", "model=tiny", f"model.block_size={args.seq_len}",
        f"attention={variant}", f"pos_enc={'rope' if variant in SOFTMAX else 'none'}",
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
        f"train.eval_every={args.steps}", "train.eval_batches=8", "train.keep_checkpoints=final",
        f"seed={args.seed}", "logger=none", f"hydra.run.dir={out / variant}",
    ]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ablate.run", *overrides], check=True, capture_output=True, text=True)
    summary = json.loads((out / variant / "summary.json").read_text())
    summary["wall_s"] = time.perf_counter() - start
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--kv-pairs", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"data=mqar seq_len {args.seq_len}, {args.kv_pairs} kv pairs, vocab {args.vocab}; model=tiny, "
          f"{args.steps} steps x batch {args.batch_size}, lr {args.lr}, seed {args.seed}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| attention | recall acc | val loss | wall s |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="ablate-recall-") as tmp:
        for variant in args.variants:
            s = train(variant, args, Path(tmp))
            print(f"| {variant} | {s['final/val_recall_acc']:.3f} | {s['final/val_loss']:.3f} | {s['wall_s']:.0f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
