"""Forward+backward time and peak memory of each attention variant next to dense causal MHA (SDPA), on this CPU.

    python benchmarks/attention.py                       # T in 512 1024 2048 4096 8192, model=small widths
    python benchmarks/attention.py --lengths 512 1024 --repeats 5 --variants mha local diff mha+qk_norm
    python benchmarks/attention.py --lengths 1024 --variants gla gla+chunk_size=1 --no-memory   # chunked vs recurrent

One attention layer (model=small: d_model 256, 8 heads; each variant with its conf/attention/*.yaml defaults,
pos_enc=none so only attention is timed), batch 1, float32, torch threads = --threads. A variant is an option name,
optionally with knobs after `+`, booleans switched on or set to a value: `mha+qk_norm`, `gqa+qk_norm+gate`,
`deltanet+chunk_size=1` (a chunk of one token is the token-by-token recurrence of the chunked linear attentions).

wall: best of --repeats forward+backward passes (wall clock), the variants interleaved round by round so that load
    from other processes hits all of them alike; ratios are against MHA at the same T, in the same process.
cpu: the process's CPU time (user + sys) for the same passes, best of --repeats: with --threads 1 it does not count
    time spent waiting for a core, so it stays comparable on a machine that other jobs share.
peak: the rise of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs just before) during one
    forward+backward pass, in a fresh subprocess per (variant, T), after one warm-up pass: everything the pass
    allocates at once, transient buffers included, with inputs and weights already resident.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import subprocess
import sys
import time

import torch

VARIANTS = ["mha", "mqa", "gqa", "local", "bigbird", "linear", "mla", "diff", "gla", "deltanet", "gated_deltanet",
            "mamba2", "mha+qk_norm", "mha+gate", "mha+qk_norm+gate"]


def build(variant: str, t: int):
    """One attention layer of `variant` (its YAML defaults, plus the knobs named after `+`: set true, or to the value
    given, `gla+chunk_size=1`) at model=small widths with context t, and its input."""
    import ablate
    from ablate.model.pos_enc import NoPositionalEncoding
    from ablate.config import model_spec

    name, *knobs = variant.split("+")
    overrides = [f"attention={name}", *(f"attention.{knob}" if "=" in knob else f"attention.{knob}=true"
                                             for knob in knobs), "pos_enc=none", "model=small",
                 f"model.block_size={t}", "dropout=off"]
    cfg = ablate.compose(overrides)
    spec = model_spec(cfg, vocab_size=256)
    layer = spec.attention.build(spec, 0)
    x = torch.randn(1, t, spec.d_model, requires_grad=True)
    return layer, x, NoPositionalEncoding(spec)


def step(layer, x, pos) -> None:
    layer(x, pos).sum().backward()
    x.grad = None
    layer.zero_grad(set_to_none=True)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1))


def peak_mib(variant: str, t: int, threads: int) -> float:
    """Run in this process (meant to be a fresh one): peak RSS rise during one forward+backward, in MiB."""
    torch.set_num_threads(threads)
    layer, x, pos = build(variant, t)
    step(layer, x, pos)  # warm-up: one-off allocations (kernels' workspaces, lazy inits) happen here
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status_kb("VmRSS")
    step(layer, x, pos)
    return (_status_kb("VmHWM") - before) / 1024


def measure_peak(variant: str, t: int, threads: int) -> float:
    # glibc: blocks >= 64 KiB come straight from mmap and go back to the OS when freed, so the resident set follows
    # what is allocated instead of what the heap once held (the warm-up pass would otherwise hide the real pass)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [sys.executable, __file__, "--peak-of", variant, str(t), "--threads", str(threads)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_times(variants: list[str], t: int, repeats: int) -> dict[str, tuple[float, float]]:
    """variant -> (best wall seconds, best CPU seconds) of one forward+backward pass."""
    built = {v: build(v, t) for v in variants}
    for v in variants:
        step(*built[v])  # warm-up
    wall = {v: float("inf") for v in variants}
    cpu = {v: float("inf") for v in variants}
    for _ in range(repeats):
        for v in variants:
            start, start_cpu = time.perf_counter(), _cpu_seconds()
            step(*built[v])
            wall[v] = min(wall[v], time.perf_counter() - start)
            cpu[v] = min(cpu[v], _cpu_seconds() - start_cpu)
    return {v: (wall[v], cpu[v]) for v in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--peak-of", nargs=2, metavar=("VARIANT", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.peak_of:
        print(json.dumps({"peak_mib": peak_mib(args.peak_of[0], int(args.peak_of[1]), args.threads)}))
        return

    logging.getLogger("ablate").setLevel(logging.ERROR)  # local/bigbird's "equals dense" notes at small T
    torch.set_num_threads(args.threads)
    variants = ["mha"] + [v for v in args.variants if v != "mha"]
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.repeats}; ratios vs mha at the same T; "
          f"load average at start {os.getloadavg()[0]:.1f} (other processes competing for the cores)\n")
    print("| T | variant | wall ms | × mha | cpu ms | × mha | peak MiB | × mha |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for t in args.lengths:
        times = measure_times(variants, t, args.repeats)
        peaks = {v: (None if args.no_memory else measure_peak(v, t, args.threads)) for v in variants}
        (mha_wall, mha_cpu), mha_peak = times["mha"], peaks["mha"]
        for v in variants:
            wall, cpu = times[v]
            mem = "– | –" if peaks[v] is None else f"{peaks[v]:.0f} | {peaks[v] / mha_peak:.2f}"
            wall_cols = f"{wall * 1e3:.0f} | {wall / mha_wall:.2f}"
            print(f"| {t} | {v} | {wall_cols} | {cpu * 1e3:.0f} | {cpu / mha_cpu:.2f} | {mem} |")
        sys.stdout.flush()
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
