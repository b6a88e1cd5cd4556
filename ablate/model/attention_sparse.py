"""Sparse causal attention: a sliding window (`local`) and BigBird's global + window + random blocks (`bigbird`).

Both exist to avoid the T×T score matrix, so neither forms it. Queries are cut into blocks; each block attends only
to the key blocks it may see, gathered next to it, in batched SDPA calls with a small per-block mask, so memory is
O(T · keys per query); this blockwise path runs on any device. On CUDA they run PyTorch's flex attention instead,
with a block mask built once per sequence length, the score bias and attention dropout inside the kernel
(`ablate.model.flex`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from ablate.components import ModelSpec, PositionalEncoding
from ablate.model.attention import MultiHeadAttention, mask_with_bias

log = logging.getLogger(__name__)

MIN_CHUNK = 64  # local attention's query chunk is max(window, MIN_CHUNK): tiny chunks waste time in per-call overhead


def _pad_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """(..., T, D) -> (..., length, D), zeros appended. Padded keys sit in every real query's future, so the
    causal mask hides them; padded queries are dropped from the output."""
    return F.pad(x, (0, 0, 0, length - x.shape[-2]))


class _SparseAttention(MultiHeadAttention):
    """MHA's projections and parameters (and its qk_norm and gate knobs); only `attend` differs, so the comparison
    with MHA is like for like. On CUDA every case goes through flex with the subclass's `mask_mod(t, device)`."""

    def flex_attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: PositionalEncoding) -> torch.Tensor:
        """q, k, v: (B, H, T, D), already rotated -> (B, H, T, D) through flex attention: the option's mask, the
        score bias and attention dropout."""
        return self.flex(q, k, v, self.mask_mod, pos, self.layer, self.attn_dropout)

class LocalAttention(_SparseAttention):
    """Causal sliding-window attention: query i sees keys i - window + 1 … i (the window counts the query itself).

    Queries go in chunks of C = max(window, MIN_CHUNK) tokens; since C >= window - 1, chunk n needs only the keys of
    chunks n - 1 and n. All chunks but the first attend to those 2C keys through one SDPA call whose (C, 2C) band mask
    is the same for every chunk; the first chunk has no predecessor and attends to itself alone.
    """

    def __init__(self, spec: ModelSpec, layer: int, window: int = 128, qk_norm: bool = False, gate: bool = False):
        super().__init__(spec, layer, qk_norm=qk_norm, gate=gate)
        self.window = window
        self.chunk = max(window, MIN_CHUNK)
        self.cache_keep = window - 1  # decoding: the next query sees itself and the window - 1 tokens before it

    def cache_numel(self, t: int) -> int:
        """A sliding window: min(t, window - 1) · 2 · n_heads · head_dim (the next query brings its own key)."""
        return min(t, self.window - 1) * self.kv_cache_per_token

    def visible(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        return (k_pos <= q_pos) & (q_pos - k_pos < self.window)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        window = knobs["window"]
        if window < 1:
            return [f"attention.window={window} must be an integer >= 1 (tokens each query sees, itself included)"]
        if window >= spec.block_size:
            log.warning(
                "attention.window=%d >= model.block_size=%d: local attention sees the whole context, "
                "so it equals dense causal attention (mha)",
                window,
                spec.block_size,
            )
        return []

    def keys_per_query(self, t: int) -> int:
        return min(self.window, t)

    def mask_mod(self, t: int, device: torch.device):
        window = self.window
        return lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx) & (q_idx - kv_idx < window)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: PositionalEncoding) -> torch.Tensor:
        q, k = pos.rotate(q), pos.rotate(k)
        b, h, t, d = q.shape
        if t <= self.window:  # every query sees its whole past: exactly dense causal attention
            return self.dense_attend(q, k, v, pos).transpose(1, 2).flatten(2)
        if self.flex.applies(q):
            return self.flex_attend(q, k, v, pos).transpose(1, 2).flatten(2)

        c = self.chunk
        n = -(-t // c)
        # (B, H, n·C, D) -> (B, n, H, C, D): chunk-major, so chunks fold into SDPA's batch dimension
        qc, kc, vc = (_pad_time(x, n * c).view(b, h, n, c, d).transpose(1, 2) for x in (q, k, v))
        position = torch.arange(2 * c, device=q.device)
        offset = c + position[:c, None] - position[None, :]  # (C, 2C) query - key position, keys = [previous, own]
        bias = pos.offset_bias(self.layer, offset)  # (H, C, 2C) or None
        mask = mask_with_bias((offset >= 0) & (offset < self.window), bias, q.dtype)
        mask = mask if bias is None else mask[None]  # SDPA's fused CPU kernel takes 2-D or 4-D masks only

        first = F.scaled_dot_product_attention(
            qc[:, 0], kc[:, 0], vc[:, 0], attn_mask=mask[..., c:], dropout_p=self.attn_dropout
        )  # (B, H, C, D)
        chunks = [first[:, None]]
        if n > 1:
            keys = torch.cat([kc[:, :-1], kc[:, 1:]], dim=-2).flatten(0, 1)  # (B·(n-1), H, 2C, D)
            values = torch.cat([vc[:, :-1], vc[:, 1:]], dim=-2).flatten(0, 1)
            rest = F.scaled_dot_product_attention(
                qc[:, 1:].flatten(0, 1), keys, values, attn_mask=mask, dropout_p=self.attn_dropout
            )
            chunks.append(rest.view(b, n - 1, h, c, d))
        y = torch.cat(chunks, dim=1)  # (B, n, H, C, D)
        return y.transpose(2, 3).reshape(b, n * c, h * d)[:, :t]


def bigbird_layout(
    n_blocks: int, n_global: int, n_window: int, n_random: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The key blocks each query block attends, causally: (n_blocks, slots) block indices and a validity mask,
    slots = n_global + n_window + n_random. Block i sees the global blocks 0 … n_global-1 (those <= i), its window
    i-n_window+1 … i, and up to n_random blocks drawn without replacement from the blocks strictly between the global
    ones and the window — never the future. No block is listed twice; unused slots are invalid."""
    slots = n_global + n_window + n_random
    index = torch.zeros(n_blocks, slots, dtype=torch.long)
    valid = torch.zeros(n_blocks, slots, dtype=torch.bool)
    for i in range(n_blocks):
        globals_ = list(range(min(n_global, i + 1)))
        window = [j for j in range(max(0, i - n_window + 1), i + 1) if j >= n_global]
        candidates = np.arange(n_global, i - n_window + 1)
        random = rng.choice(candidates, size=min(n_random, len(candidates)), replace=False) if n_random else []
        blocks = globals_ + window + sorted(int(j) for j in random)
        index[i, : len(blocks)] = torch.tensor(blocks)
        valid[i, : len(blocks)] = True
    return index, valid


class BigBirdAttention(_SparseAttention):
    """Causal BigBird (Zaheer et al., 2020): each block of `block_size` queries attends to global, window and random
    key blocks (see `bigbird_layout`), token-level causal within them. Global blocks come first in the sequence, so
    their own queries see everything before them — the causal form of BigBird's global tokens. The random blocks are
    drawn once per layer from (seed, layer) and stay fixed for the run."""

    def __init__(
        self,
        spec: ModelSpec,
        layer: int,
        block_size: int = 32,
        num_global_blocks: int = 1,
        num_window_blocks: int = 3,
        num_random_blocks: int = 2,
        qk_norm: bool = False,
        gate: bool = False,
    ):
        super().__init__(spec, layer, qk_norm=qk_norm, gate=gate)
        self.block = block_size
        self.n_global, self.n_window = num_global_blocks, num_window_blocks
        n_blocks = -(-spec.block_size // block_size)
        rng = np.random.default_rng([spec.seed, layer])
        index, valid = bigbird_layout(n_blocks, num_global_blocks, num_window_blocks, num_random_blocks, rng)
        # derived from (seed, layer) alone, so not saved in checkpoints
        self.register_buffer("key_blocks", index, persistent=False)
        self.register_buffer("key_block_valid", valid, persistent=False)

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        problems = []
        for name in ("block_size", "num_window_blocks"):
            if knobs[name] < 1:
                problems.append(f"attention.{name}={knobs[name]} must be an integer >= 1")
        for name in ("num_global_blocks", "num_random_blocks"):
            if knobs[name] < 0:
                problems.append(f"attention.{name}={knobs[name]} must be an integer >= 0 (0 turns that part off)")
        block_size, num_global_blocks, num_window_blocks = (
            knobs["block_size"], knobs["num_global_blocks"], knobs["num_window_blocks"])
        if not problems and -(-spec.block_size // block_size) <= num_global_blocks + num_window_blocks:
            log.warning(
                "attention=bigbird with block_size=%d, num_global_blocks=%d, num_window_blocks=%d covers all of "
                "model.block_size=%d: it equals dense causal attention (mha)",
                block_size,
                num_global_blocks,
                num_window_blocks,
                spec.block_size,
            )
        return problems

    def keys_per_query(self, t: int) -> int:
        return min(self.key_blocks.shape[1] * self.block, t)

    def block_pattern(self, n: int) -> torch.Tensor:
        """(n, n) bool: query block i may attend key block j (before the token-level causal mask)."""
        allowed = torch.zeros(n, n, dtype=torch.bool, device=self.key_blocks.device)
        rows = torch.arange(n, device=allowed.device)[:, None].expand_as(self.key_blocks[:n])
        allowed[rows[self.key_block_valid[:n]], self.key_blocks[:n][self.key_block_valid[:n]]] = True
        return allowed

    def visible(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """Decoding keeps every key (cache_numel = t · 2 · n_heads · head_dim): a random block may reach back to
        any earlier block."""
        blocks = self.block_pattern(-(-(int(q_pos.max()) + 1) // self.block))
        return (k_pos <= q_pos) & blocks[q_pos // self.block, k_pos // self.block]

    def mask_mod(self, t: int, device: torch.device):
        size, blocks = self.block, self.block_pattern(-(-t // self.block)).to(device)
        return lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx) & blocks[q_idx // size, kv_idx // size]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: PositionalEncoding) -> torch.Tensor:
        q, k = pos.rotate(q), pos.rotate(k)
        b, h, t, d = q.shape
        s = self.block
        n = -(-t // s)
        if n <= self.n_global + self.n_window:  # every block sees all earlier blocks: exactly dense
            return self.dense_attend(q, k, v, pos).transpose(1, 2).flatten(2)
        if self.flex.applies(q):
            return self.flex_attend(q, k, v, pos).transpose(1, 2).flatten(2)

        index, valid = self.key_blocks[:n], self.key_block_valid[:n]  # (n, K)
        slots = index.shape[1]
        # (B, H, n·S, D) -> (B·H, n, S, D): query blocks take the place of SDPA's heads dimension
        qb, kb, vb = (_pad_time(x, n * s).reshape(b * h, n, s, d) for x in (q, k, v))
        # key blocks gathered next to each query block: (B·H, n, K·S, D). index_select, not fancy indexing: its
        # backward (index_add) is several times faster on CPU
        keys = kb.index_select(1, index.flatten()).view(b * h, n, slots * s, d)
        values = vb.index_select(1, index.flatten()).view(b * h, n, slots * s, d)

        arange = torch.arange(s, device=q.device)
        q_pos = (torch.arange(n, device=q.device)[:, None] * s + arange)[:, :, None]  # (n, S, 1)
        k_pos = (index[:, :, None] * s + arange).view(n, 1, slots * s)  # (n, 1, K·S)
        allowed = valid.repeat_interleave(s, dim=1)[:, None, :] & (k_pos <= q_pos)  # (n, S, K·S)
        bias = pos.offset_bias(self.layer, q_pos - k_pos) if pos.acts_on == "bias" else None  # (H, n, S, K·S)
        if bias is None:
            mask = allowed[None]  # (1, n, S, K·S), broadcast over B·H
        else:  # SDPA wants a 4-D mask: one copy per batch row
            mask = mask_with_bias(allowed, bias, q.dtype)  # (H, n, S, K·S)
            mask = mask.expand(b, h, n, s, slots * s).reshape(b * h, n, s, slots * s)
        y = F.scaled_dot_product_attention(qb, keys, values, attn_mask=mask, dropout_p=self.attn_dropout)
        y = y.view(b, h, n * s, d)[:, :, :t]  # (B·H, n, S, D) -> (B, H, T, D)
        return y.transpose(1, 2).flatten(2)
