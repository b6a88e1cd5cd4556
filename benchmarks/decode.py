"""Decoding speed and decoding-state size by context length, per attention option, with each option's own cache
(`TransformerLM.decode`), in one run.

    python benchmarks/decode.py                                   # 1k … 16k, every attention option
    python benchmarks/decode.py --contexts 1024 2048 4096 --variants mha mqa gqa mla local linear --threads 2

The whole model at model=small widths (d_model 256, 4 layers, 8 heads; each option with its conf/attention/*.yaml
defaults, pos_enc=rope; block_size = the largest context plus the timed steps), float32, batch 1,
on --device. For each context L: the cache is filled with L − 1 tokens (prefill in chunks of --chunk tokens, so
memory stays bounded), then --steps greedy tokens are decoded one pass each and timed (best of --repeats).

state: bytes of decoding state per sequence after L tokens, as the cache holds them (`DecodeCache`, checked equal to
    `TransformerLM.cache_numel(L)` × 4 bytes).
tok/s: decoded tokens per second at that context; × mha: the ratio to MHA's at the same L, in the same process.
The PNG (--png) plots both against L.
"""

from __future__ import annotations

import argparse
import time

import torch

VARIANTS = ["mha", "mqa", "gqa", "mla", "local", "bigbird", "linear", "diff"]


def build(variant: str, max_context: int, device: str):
    import ablate
    from ablate.config import validate
    from ablate.model import TransformerLM

    spec, _ = validate(ablate.compose([f"attention={variant}", "pos_enc=rope", "model=small",
                                       f"model.block_size={max_context}", "dropout=off"]))
    torch.manual_seed(0)
    return TransformerLM(spec).to(device).eval()


@torch.no_grad()
def measure(model, context: int, steps: int, chunk: int, repeats: int, device: str) -> tuple[int, float]:
    """(state bytes after `context` tokens, best decode tokens/s over `repeats`)."""
    from ablate.components import DecodeCache

    ids = torch.randint(0, 256, (1, context + steps), generator=torch.Generator().manual_seed(0)).to(device)
    best = 0.0
    for _ in range(repeats):
        cache = DecodeCache()
        for start in range(0, context - 1, chunk):
            logits = model.decode(ids[:, start : min(start + chunk, context - 1)], cache)
        state = cache.numel_per_sequence() * 4  # float32
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        tic = time.perf_counter()
        for i in range(steps):
            logits = model.decode(logits[:, -1:].argmax(-1), cache)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, steps / (time.perf_counter() - tic))
    assert cache.numel_per_sequence() == model.cache_numel(context - 1 + steps)
    return state, best


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--contexts", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    cli.add_argument("--variants", nargs="+", default=VARIANTS)
    cli.add_argument("--steps", type=int, default=16, help="decoded tokens timed per context")
    cli.add_argument("--chunk", type=int, default=1024, help="prefill chunk (tokens per pass)")
    cli.add_argument("--repeats", type=int, default=2)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--device", default="cpu")
    cli.add_argument("--png", default="decode.png", help="plot file ('' for none)")
    args = cli.parse_args()
    torch.set_num_threads(args.threads)
    largest = max(args.contexts) + args.steps
    results: dict[str, dict[int, tuple[int, float]]] = {}
    for variant in args.variants:
        model = build(variant, largest, args.device)
        results[variant] = {L: measure(model, L, args.steps, args.chunk, args.repeats, args.device)
                            for L in args.contexts}
    print(f"model=small widths, batch 1, float32, {args.device}, {args.threads} threads, {args.steps} steps timed")
    print("| context | variant | state | × mha | tok/s | × mha |")
    print("|---:|---|---:|---:|---:|---:|")
    for L in args.contexts:
        base = results.get("mha", {}).get(L)
        for variant, by_context in results.items():
            state, rate = by_context[L]
            ratios = (f"{state / base[0]:.3f}", f"{rate / base[1]:.2f}") if base else ("–", "–")
            print(f"| {L} | {variant} | {state / 2**20:.2f} MiB | {ratios[0]} | {rate:.1f} | {ratios[1]} |")
    if args.png:
        plot(results, args.contexts, args.png)
        print(f"plot: {args.png}")


def plot(results: dict[str, dict[int, tuple[int, float]]], contexts: list[int], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=110, layout="constrained")
    state_ax, rate_ax = fig.subplots(1, 2)
    for variant, by_context in results.items():
        state_ax.plot(contexts, [by_context[L][0] / 2**20 for L in contexts], marker="o", label=variant)
        rate_ax.plot(contexts, [by_context[L][1] for L in contexts], marker="o", label=variant)
    for ax, label in ((state_ax, "decoding state per sequence (MiB)"), (rate_ax, "decode tokens/s (batch 1)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    rate_ax.legend(fontsize=9)
    fig.suptitle("Decoding with each attention's own cache (model=small widths)")
    fig.savefig(path)


if __name__ == "__main__":
    main()
