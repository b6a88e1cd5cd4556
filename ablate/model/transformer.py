"""A decoder-only LM assembled from one choice per component family: embedding -> N blocks -> norm -> head."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch import nn

from ablate.components import Attention, Block, Component, DecodeCache, ForwardContext, ModelSpec, PositionalEncoding


class PreNormBlock(Block):
    """x + f(norm(x)): the residual stream itself is never normalized (GPT-2 and later)."""

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), pos, context))
        return x + self.drop(self.ffn(self.norm2(x)))


class PostNormBlock(Block):
    """norm(x + f(x)): the original Transformer; outputs are already normalized, so no final norm."""

    final_norm = False

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, pos, context)))
        return self.norm2(x + self.drop(self.ffn(x)))


class SandwichBlock(Block):
    """x + norm_out(f(norm_in(x))) for both sublayers: sandwich-LN (Ding et al. 2021, CogView), the pre- and
    post-sublayer norms of Gemma 2/3; the residual stream is never normalized, so a final norm follows the last
    block. Parameters: two norms per layer more than pre-norm."""

    def __init__(self, spec: ModelSpec, layer: int):
        super().__init__(spec, layer)
        self.norm1_out = spec.norm.build(spec)
        self.norm2_out = spec.norm.build(spec)

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, context: ForwardContext | None = None) -> torch.Tensor:
        x = x + self.drop(self.norm1_out(self.attn(self.norm1(x), pos, context)))
        return x + self.drop(self.norm2_out(self.ffn(self.norm2(x))))


class TransformerLM(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.token_embedding = nn.Embedding(spec.vocab_size, spec.d_model)
        self.pos_enc = spec.pos_enc.build(spec)
        self.drop = nn.Dropout(spec.dropout)
        self.blocks = nn.ModuleList(spec.placement.build(spec, layer) for layer in range(spec.n_layers))
        self.final_norm = spec.norm.build(spec) if spec.placement.cls.final_norm else nn.Identity()
        self.head = nn.Linear(spec.d_model, spec.vocab_size, bias=False)
        if spec.tie_embeddings:
            self.head.weight = self.token_embedding.weight
        # model.pos_enc_pattern: one module per distinct entry, shared by the layers that use it (as one `pos_enc`
        # is shared by all layers without a pattern); self.pos_enc then only embeds (a no-op: validation refuses
        # input encodings there)
        distinct = [c for i, c in enumerate(spec.pos_enc_pattern) if c not in spec.pos_enc_pattern[:i]]
        self.layer_pos_encs = nn.ModuleList(c.build(dataclasses.replace(spec, pos_enc=c)) for c in distinct)
        self.layer_pos_index = [distinct.index(spec.pos_enc_at(layer)) for layer in range(spec.n_layers)] \
            if distinct else []
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """N(0, init_std) weights, zero biases; residual output projections scaled by 1/sqrt(2·n_layers) (GPT-2)."""
        std = self.spec.init_std
        if isinstance(module, nn.Linear):
            scale = 1 / math.sqrt(2 * self.spec.n_layers) if getattr(module, "is_residual_output", False) else 1.0
            nn.init.normal_(module.weight, std=std * scale)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: (B, T) token ids, T <= block_size -> logits (B, T, vocab_size)."""
        return self._logits(idx, ForwardContext())  # (model.value_residual: layer 0's values are shared there)

    def decode(self, idx: torch.Tensor, cache: DecodeCache) -> torch.Tensor:
        """idx: (B, T_new), the next tokens of sequences whose earlier tokens `cache` holds (a new DecodeCache: none)
        -> logits (B, T_new, vocab_size), equal to forward's at those positions; the tokens join the cache. The
        whole sequence must fit in block_size (past it, start a new cache from the last block_size tokens)."""
        logits = self._logits(idx, ForwardContext(cache=cache))
        cache.start += idx.shape[1]
        return logits

    def _logits(self, idx: torch.Tensor, context: ForwardContext) -> torch.Tensor:
        start = context.cache.start if context.cache is not None else 0
        if start + idx.shape[1] > self.spec.block_size:
            raise ValueError(f"sequence length {start + idx.shape[1]} exceeds model.block_size={self.spec.block_size}")
        x = self.drop(self.pos_enc.embed(self.token_embedding(idx), start))
        for layer, block in enumerate(self.blocks):
            x = block(x, self.pos_enc_at(layer), context)
        logits = self.head(self.final_norm(x))
        if self.spec.logit_softcap is not None:
            logits = soft_cap(logits, self.spec.logit_softcap)
        return logits

    def cache_numel(self, t: int) -> int:
        """Numbers of decoding state one sequence keeps after t tokens, over every layer (`Attention.cache_numel`)."""
        return sum(m.cache_numel(t) for _, m in self.components() if isinstance(m, Attention))

    def pos_enc_at(self, layer: int) -> PositionalEncoding:
        """The positional encoding layer `layer` attends with."""
        return self.layer_pos_encs[self.layer_pos_index[layer]] if self.layer_pos_index else self.pos_enc

    def logit_losses(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training losses on the output logits besides cross-entropy: `z_loss` when model.z_loss > 0."""
        return {"z_loss": z_loss(logits, self.spec.z_loss)} if self.spec.z_loss > 0 else {}

    def components(self) -> list[tuple[str, Component]]:
        """(family, module) for every component instance, outermost first (a block before its sublayers)."""
        return [(m.family, m) for m in self.modules() if isinstance(m, Component)]

    def aux_losses(self) -> dict[str, torch.Tensor]:
        """The auxiliary losses the components produced in the last forward pass, summed per family."""
        losses: dict[str, torch.Tensor] = {}
        for family, module in self.components():
            loss = module.aux_loss()
            if loss is not None:
                losses[family] = losses[family] + loss if family in losses else loss
        return losses

    def after_step(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Each component's `after_step` (after every optimizer step; `reduce` sums over processes)."""
        for _, module in self.components():
            module.after_step(reduce)

    def component_metrics(self) -> dict[str, torch.Tensor]:
        """The components' `metrics()`: `<family>/<layer>/<name>` for those in a block (`<family>/<name>` for
        the others), and `<family>/<name>` the mean over a family's layers for names without a "/"."""
        values: dict[str, torch.Tensor] = {}
        by_name: dict[str, list[torch.Tensor]] = {}
        for layer, block in enumerate(self.blocks):
            for module in block.modules():
                if isinstance(module, Component) and not isinstance(module, Block):
                    for name, value in module.metrics().items():
                        values[f"{module.family}/{layer}/{name}"] = value
                        if "/" not in name:
                            by_name.setdefault(f"{module.family}/{name}", []).append(value)
        for module in (self.pos_enc, *self.layer_pos_encs, self.final_norm):
            if isinstance(module, Component):
                values.update({f"{module.family}/{name}": value for name, value in module.metrics().items()})
        return {**values, **{key: torch.stack(v).mean() for key, v in by_name.items()}}


def soft_cap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap · tanh(logits / cap) (Gemma 2): logits bounded to (-cap, cap), nearly unchanged where |logits| << cap."""
    return cap * torch.tanh(logits / cap)


def z_loss(logits: torch.Tensor, coef: float) -> torch.Tensor:
    """coef · mean over every position of log²Z, Z = Σ_v exp(logit_v) the softmax normaliser (PaLM, section 5): it
    pulls log Z towards 0, keeping the output softmax self-normalized and its logits from drifting."""
    dtype = torch.promote_types(logits.dtype, torch.float32)  # half precision in float32; float64 stays float64
    return coef * torch.logsumexp(logits.to(dtype), dim=-1).pow(2).mean()


def embedding_parameters(model: TransformerLM) -> int:
    """Parameters of lookup tables (token and learned position embeddings); a tied head counts once, here."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))


def inactive_parameters(model: TransformerLM) -> int:
    """Parameters a token does not pass through: each leaf component's total minus what it declares active."""
    leaves = [m for _, m in model.components() if not isinstance(m, Block)]
    return sum(sum(p.numel() for p in m.parameters()) - m.active_parameters() for m in leaves)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """total (a tied weight once), non_embedding, and active (what one token passes through, embeddings included)."""
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "non_embedding": total - embedding_parameters(model),
            "active": total - inactive_parameters(model)}


def flops_per_token(model: TransformerLM) -> int:
    """Training FLOPs per token at full context: 3 × forward (backward costs twice the forward), where forward =
    2·N for the matmuls of the active non-embedding parameters and the head, plus each layer's score and value
    products (`context_flops`: dense 4·T·d, fewer for sparse and linear variants) (PaLM, appendix B). Under a
    `model.attention_pattern` each layer counts its own attention. Element-wise work (norms, DyT, the logit
    soft-cap, the z-loss) is not counted."""
    spec = model.spec
    counts = count_parameters(model)
    active_non_embedding = counts["non_embedding"] - (counts["total"] - counts["active"])
    n = active_non_embedding + spec.vocab_size * spec.d_model  # the head matmul
    attention = [m for _, m in model.components() if isinstance(m, Attention)]
    return 6 * n + 3 * sum(layer.context_flops(spec.block_size) for layer in attention)
