"""Flex attention (`torch.nn.attention.flex_attention`) for softmax attention on CUDA: one kernel that carries an
option's mask, a positional score bias and attention dropout without forming a T×T matrix.

- The mask is the option's `mask_mod` (causal, a sliding window, BigBird's blocks) as a BlockMask, built once per
  sequence length, so blocks no query may see are skipped.
- A score bias that depends on the offset only (ALiBi, T5 relative buckets: `PositionalEncoding.offset_bias`) is
  added inside the kernel from an (H, T) table of the bias per offset, never an (H, T, T) matrix. A learned table
  (relative) gets its gradient through flex's captured-buffer gradients.
- Attention dropout, which flex does not have: the keys and values are passed twice. A pair (query i, key j) is
  kept or dropped by a hash of (seed, batch row, head, i, j) (`dropout_keep`, a pure function of its arguments, so
  flex's backward recomputes the forward's mask). The first copy of key j keeps its score where the pair is dropped,
  the second where it is kept, and the first copy's values are zeros. The softmax then runs over every score once
  (its normalizer is the undropped one) while only kept pairs add values: Σ_j softmax_ij · keep_ij · v_j, divided by
  1 - p as in `F.dropout`. It costs twice the score work of flex without dropout.

Flex compiles on a CPU in this torch but has no CPU backward, so training on a CPU keeps the SDPA paths; the tests
run this module's forward on CPU (eager flex in float64 against naive float64 math) and force the flex path there.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from ablate.components import PositionalEncoding

MaskMod = Callable[..., torch.Tensor]
WORD = 0xFFFFFFFF  # the hash works on 32-bit words held in int64, so no product overflows


def _mix(x: torch.Tensor) -> torch.Tensor:
    """An integer finalizer (xor-shift-multiply, twice) over 32-bit words: neighbouring inputs give unrelated bits."""
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & WORD
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & WORD
    return x ^ (x >> 16)


def dropout_keep(seed: torch.Tensor, b, h, q_idx, kv_idx, threshold: int) -> torch.Tensor:
    """Whether attention pair (b, h, q_idx, kv_idx) is kept under dropout: a uniform 32-bit hash of the pair and
    `seed` against `threshold` = p · 2³², so a pair is dropped with probability p. Broadcasts over its arguments."""
    x = _mix(seed ^ q_idx.to(torch.int64))
    x = _mix(x ^ kv_idx.to(torch.int64))
    x = _mix(x ^ (b.to(torch.int64) * 65536 + h.to(torch.int64)))
    return x >= threshold


@functools.cache
def compiled_flex_attention():
    """flex_attention compiled once per process and shared by every layer (uncompiled it forms the full score
    matrix, so the trainer's `parallelize` step swaps this in through `compile_kernels`)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def eager_flex_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention(q, k, v, **kwargs)


def causal_mask_mod(t: int, device: torch.device) -> MaskMod:
    return lambda b, h, q_idx, kv_idx: kv_idx <= q_idx


class FlexAttention:
    """One layer's flex kernel (eager until `compile`) and its block masks by sequence length. `devices`: where
    attention takes this path (CUDA; the tests add "cpu" to run it forward there)."""

    def __init__(self) -> None:
        self.kernel = eager_flex_attention
        self.devices = {"cuda"}
        self.block_masks: dict = {}  # (T, device, keys passed twice) -> BlockMask

    def compile(self) -> None:
        self.kernel = compiled_flex_attention()

    def applies(self, q: torch.Tensor) -> bool:
        return q.device.type in self.devices

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_mod: Callable[[int, torch.device],
                 MaskMod], pos: PositionalEncoding, layer: int, dropout_p: float) -> torch.Tensor:
        """q (B, H, T, D), k and v (B, H_kv, T, D), already rotated -> (B, H, T, D_v): softmax attention under the
        mask `mask_mod(t, device)` builds, `pos`'s offset bias for `layer`, and dropout with probability dropout_p."""
        t = q.shape[-2]
        bias = pos.offset_bias(layer, torch.arange(t, device=q.device)) if pos.acts_on == "bias" else None  # (H, T)
        twice = dropout_p > 0
        key = (t, q.device, twice)
        if key not in self.block_masks:
            self.block_masks[key] = self._block_mask(mask_mod(t, q.device), t, q.device, twice)
        kwargs = {"block_mask": self.block_masks[key], "enable_gqa": k.shape[1] != q.shape[1]}
        if not twice:
            if bias is not None:
                kwargs["score_mod"] = lambda score, b, h, q_idx, kv_idx: score + bias[h, (q_idx - kv_idx).clamp(min=0)]
            return self.kernel(q, k, v, **kwargs)
        seed = torch.randint(2**31 - 1, (), device=q.device, dtype=torch.int64)  # from the run's random stream
        threshold = int(dropout_p * 2**32)

        def score_mod(score, b, h, q_idx, kv_idx):
            second = kv_idx >= t
            j = torch.where(second, kv_idx - t, kv_idx)
            if bias is not None:
                score = score + bias[h, (q_idx - j).clamp(min=0)]
            keep = dropout_keep(seed, b, h, q_idx, j, threshold)
            return torch.where(second == keep, score, -float("inf"))

        k2, v2 = torch.cat([k, k], dim=-2), torch.cat([torch.zeros_like(v), v], dim=-2)
        return self.kernel(q, k2, v2, score_mod=score_mod, **kwargs) / (1 - dropout_p)

    @staticmethod
    def _block_mask(mask: MaskMod, t: int, device: torch.device, twice: bool):
        from torch.nn.attention.flex_attention import create_block_mask

        if not twice:
            return create_block_mask(mask, None, None, t, t, device=device)
        doubled = lambda b, h, q_idx, kv_idx: mask(b, h, q_idx, torch.where(kv_idx >= t, kv_idx - t, kv_idx))
        return create_block_mask(doubled, None, None, t, 2 * t, device=device)
