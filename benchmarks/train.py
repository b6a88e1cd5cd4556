"""Training tokens/s through ablate's trainer next to a bare hand-written loop of the same model, in one run.

    python benchmarks/train.py                                   # model=tiny and model=small, dropout on and off
    python benchmarks/train.py --configs "model=small" "model=small dropout.attention=0" --steps 40 --threads 2

framework: `ablate.train` on the config (logger none, no sample, evals only at the end): its summary's
    perf/tokens_per_s, which counts training steps only (evaluation excluded) from the end of the first step.
bare: the same TransformerLM built from the same config, torch.optim.AdamW (fused on CUDA), bf16 autocast on CUDA,
    random token batches of the same shape already on the device; forward, cross-entropy, backward, clip, step —
    nothing else; timed over the same number of steps after one warm-up step.
ratio: framework ÷ bare (goal ≥ 0.95): what the trainer's bookkeeping (data loading, logging, checkpoint checks,
    the divergence guard) costs. The two alternate --repeats times and the best of each is kept, so load from
    other processes hits both alike. On CUDA the MFU of each is printed too (against the device's bf16 peak), and
    the framework compiles each block (train.compile=auto) while the bare loop runs eager: add a config with
    `train.compile=false` to see the bookkeeping alone there.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
import time

import torch


def framework(overrides: list[str], steps: int) -> float:
    import ablate

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = ablate.compose([*overrides, "logger=none", f"train.max_steps={steps}", f"train.eval_every={steps}",
                              "train.eval_batches=1", "train.sample.tokens=0", "train.inference.decode_tokens=0",
                              "train.keep_checkpoints=none", f"out_dir={run_dir}"])
        return float(ablate.train(cfg)["perf/tokens_per_s"])


def bare(overrides: list[str], steps: int) -> tuple[float, float]:
    """(tokens/s, flops per token) of a hand-written loop over the same model."""
    import torch.nn.functional as F

    import ablate
    from ablate.config import train_spec
    from ablate.model import flops_per_token
    from ablate.training.device import autocast, pick_device

    cfg = ablate.compose(overrides)
    device = pick_device(str(cfg.device))
    model = ablate.build_model(cfg).to(device).train()
    spec = train_spec(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=tuple(spec.betas),
                                  weight_decay=spec.weight_decay, fused=device.startswith("cuda"))
    b, t = spec.batch_size, model.spec.block_size
    ids = torch.randint(0, model.spec.vocab_size, (steps + 1, b, t + 1), device=device)

    def step(i: int) -> None:
        x, y = ids[i, :, :-1], ids[i, :, 1:]
        with autocast(device):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()

    step(0)  # warm-up, as the framework's throughput leaves out its first step
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * b * t / (time.perf_counter() - tic), flops_per_token(model)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--configs", nargs="+", default=["model=tiny", "model=tiny dropout=off", "model=small",
                                                      "model=small dropout.attention=0", "model=small dropout=off"])
    cli.add_argument("--steps", type=int, default=30)
    cli.add_argument("--repeats", type=int, default=2)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--device", default="auto")
    args = cli.parse_args()
    torch.set_num_threads(args.threads)
    from ablate.training.device import peak_flops, pick_device

    device = pick_device(args.device)
    peak = peak_flops(device)
    print(f"device {device}, {args.threads} threads, {args.steps} steps, best of {args.repeats}")
    print("| config | framework tok/s | bare tok/s | ratio |" + (" MFU framework | MFU bare |" if peak else ""))
    print("|---|---:|---:|---:|" + ("---:|---:|" if peak else ""))
    for config in args.configs:
        overrides = [*shlex.split(config), f"device={args.device}"]
        ours, theirs, fpt = 0.0, 0.0, 0
        for _ in range(args.repeats):
            ours = max(ours, framework(overrides, args.steps))
            rate, fpt = bare(overrides, args.steps)
            theirs = max(theirs, rate)
        mfu = f" {fpt * ours / peak:.1%} | {fpt * theirs / peak:.1%} |" if peak else ""
        print(f"| {config} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.3f} |{mfu}")


if __name__ == "__main__":
    main()
