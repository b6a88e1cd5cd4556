"""Data-path benchmark (not a test): tokenization throughput, and the share of a training step spent waiting on data.

    python benchmarks/data.py                       # stdlib text, model=small on CPU
    python benchmarks/data.py --mb 8 --steps 10     # quicker

1. Tokenization, in MB of UTF-8 text per second: `encode` alone (byte, and bpe after training it), and a whole
   cold token-cache build (read files, split, train bpe, encode, write), into a throwaway cache directory.
2. Data wait: the training step of the real loop (batch -> forward -> backward -> AdamW) for model=small on CPU,
   timing the batch fetch (`next()` on the memmapped cache) against the whole step. Target: < 2 %.
Prints a Markdown table; docs/data.md carries the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import ablate  # noqa: E402
from ablate.data import load_tokens  # noqa: E402
from ablate.data.corpus import StdlibCorpus, take_bytes  # noqa: E402
from ablate.data.tokenizer import BpeTokenizer, ByteTokenizer  # noqa: E402
from ablate.model import TransformerLM  # noqa: E402
from ablate.config import validate  # noqa: E402
from ablate.training.optim import make_optimizer  # noqa: E402


def stdlib_texts(mb: float) -> list[str]:
    return [doc.text for doc in take_bytes(StdlibCorpus().documents(), int(mb * 1e6))]


def encode_throughput(tokenizer, texts: list[str]) -> float:
    size = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    started = time.perf_counter()
    tokenizer.encode_batch(texts)
    return size / (time.perf_counter() - started)


def cache_build_throughput(overrides: list[str], mb: float, size: float) -> tuple[float, float]:
    """(MB/s of a cold cache build of the first `mb` MB of stdlib text, `size` MB in all; seconds to load it warm)."""
    with tempfile.TemporaryDirectory() as cache:
        cfg = ablate.compose(["model=small", f"data.max_bytes={int(mb * 1e6)}", f"data.cache_dir={cache}", *overrides])
        started = time.perf_counter()
        load_tokens(cfg.data, cfg.tokenizer, int(cfg.model.block_size))
        cold = time.perf_counter() - started
        started = time.perf_counter()
        load_tokens(cfg.data, cfg.tokenizer, int(cfg.model.block_size))
        return size / cold, time.perf_counter() - started


def data_wait_share(overrides: list[str], steps: int, warmup: int = 2) -> tuple[float, float, float]:
    """(share of step time in the batch fetch, mean fetch ms, mean step ms) for the loop's own step on CPU."""
    cfg = ablate.compose(["model=small", "device=cpu", "logger=none", *overrides])
    mspec, tspec = validate(cfg)
    data = load_tokens(cfg.data, cfg.tokenizer, mspec.block_size)
    torch.manual_seed(0)
    model = TransformerLM(mspec)
    optimizer = make_optimizer(model, tspec, "cpu")
    batches = data.train_batches(tspec.batch_size, mspec.block_size)
    fetch = total = 0.0
    for step in range(warmup + steps):
        tic = time.perf_counter()
        x, y = batches.next()
        fetched = time.perf_counter()
        loss = F.cross_entropy(model(x).float().flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tspec.grad_clip)
        optimizer.step()
        loss.item()
        done = time.perf_counter()
        if step >= warmup:
            fetch += fetched - tic
            total += done - tic
    return fetch / total, 1e3 * fetch / steps, 1e3 * total / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=16.0, help="MB of stdlib text to tokenize (default 16)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per sampler (default 20)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")

    texts = stdlib_texts(args.mb)
    size = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    started = time.perf_counter()
    bpe = BpeTokenizer.train(texts, 4096, ["<|endoftext|>"])
    train_s = time.perf_counter() - started
    print(f"\n| tokenization ({size:.1f} MB of stdlib source) | MB/s |\n|---|---|")
    print(f"| byte: encode | {encode_throughput(ByteTokenizer(), texts):,.0f} |")
    print(f"| bpe 4096: encode (`encode_batch_fast`, all cores) | {encode_throughput(bpe, texts):.1f} |")
    print(f"| bpe 4096: train | {size / train_s:.1f} ({train_s:.1f} s) |")
    for name, overrides in (("byte", []), ("bpe 4096", ["tokenizer=bpe"])):
        rate, warm = cache_build_throughput(overrides, args.mb, size)
        print(f"| {name}: cold cache build of {size:.0f} MB, end to end | {rate:.1f} (warm load {warm * 1e3:.0f} ms) |")

    print("\n| model=small on CPU, batch 16 x 256 | data wait | fetch | step |\n|---|---|---|---|")
    cases = (("data=stdlib, sampling=random", []), ("data=stdlib, sampling=sequential", ["data.sampling=sequential"]),
             ("data=mqar (seq_len 256)", ["data=mqar", "data.seq_len=256", "data.num_kv_pairs=32",
                                          "data.num_train_examples=20000"]))
    for name, overrides in cases:
        share, fetch_ms, step_ms = data_wait_share(overrides, args.steps)
        print(f"| {name} | {100 * share:.3f} % | {fetch_ms:.2f} ms | {step_ms:.0f} ms |")


if __name__ == "__main__":
    main()
