"""What a trained variant costs at inference, measured after training on the run's device (summary.json
`inference/*`): the decoding state one sequence needs at the full context, and prefill and greedy-decoding speed
with the cache (`TransformerLM.decode`) at batch 1 and a larger batch. MQA, GQA, MLA, local and linear attention
exist for these numbers."""

from __future__ import annotations

import time

import torch

from ablate.components import DecodeCache
from ablate.model import TransformerLM
from ablate.spec import InferenceSpec
from ablate.training.device import autocast


def state_bytes(model: TransformerLM, device: str) -> int:
    """Bytes of decoding state per sequence at the model's block_size, in the dtype decoding runs in (bf16 under
    CUDA's autocast, else the parameters' dtype): Σ over layers of `Attention.cache_numel(block_size)`."""
    dtype = torch.bfloat16 if device.startswith("cuda") else next(model.parameters()).dtype
    return model.cache_numel(model.spec.block_size) * torch.finfo(dtype).bits // 8


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


@torch.no_grad()
def decode_speed(model: TransformerLM, device: str, batch: int, steps: int) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s) at this batch: a prompt of half the context in one pass, then `steps`
    greedy tokens one pass each (all sequences of the batch count). Random prompt ids: speed does not depend on
    them. One untimed pass first, so one-time costs are not counted."""
    spec = model.spec
    prompt_len = max(1, min(spec.block_size // 2, spec.block_size - steps))
    steps = min(steps, spec.block_size - prompt_len)
    ids = torch.randint(0, spec.vocab_size, (batch, prompt_len), device=device,
                        generator=torch.Generator(device=device).manual_seed(0))
    with autocast(device):
        model.decode(ids[:, :1], DecodeCache())  # warm-up
        _synchronize(device)
        cache, tic = DecodeCache(), time.perf_counter()
        logits = model.decode(ids, cache)
        _synchronize(device)
        prefill_s, tic = time.perf_counter() - tic, time.perf_counter()
        for _ in range(steps):
            logits = model.decode(logits[:, -1].argmax(-1, keepdim=True), cache)
        _synchronize(device)
        decode_s = time.perf_counter() - tic
    return batch * prompt_len / prefill_s, batch * steps / decode_s if steps else 0.0


def inference_costs(model: TransformerLM, device: str, spec: InferenceSpec) -> dict[str, float | int]:
    """summary.json's inference keys (speeds only with `decode_tokens` > 0): kv_cache_bytes, prefill_tokens_per_s
    and decode_tokens_per_s at batch 1, decode_tokens_per_s_batched at batch decode_batch."""
    costs: dict[str, float | int] = {"inference/kv_cache_bytes": state_bytes(model, device)}
    if spec.decode_tokens:
        was_training = model.training
        model.eval()
        prefill, decode = decode_speed(model, device, 1, spec.decode_tokens)
        batched = decode_speed(model, device, spec.batch, spec.decode_tokens)[1]
        costs.update({"inference/prefill_tokens_per_s": prefill, "inference/decode_tokens_per_s": decode,
                      "inference/decode_batch": spec.batch, "inference/decode_tokens_per_s_batched": batched})
        model.train(was_training)
    return costs
