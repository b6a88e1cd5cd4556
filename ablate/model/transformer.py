"""A decoder-only LM assembled from one choice per component family: embedding -> N blocks -> norm -> head."""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.model.attention import ATTENTION
from ablate.model.ffn import FFN
from ablate.model.norm import NORM
from ablate.model.pos_enc import POS_ENC, PositionalEncoding
from ablate.registry import Registry
from ablate.spec import ModelSpec

PLACEMENT = Registry("placement")


def _build(registry: Registry, choice, *args):
    return registry.get(choice.name)(*args, **choice.knobs)


class Block(nn.Module):
    final_norm = True  # whether the model needs a norm after the last block

    def __init__(self, spec: ModelSpec, layer: int):
        super().__init__()
        self.norm1 = _build(NORM, spec.norm, spec)
        self.attn = _build(ATTENTION, spec.attention, spec, layer)
        self.norm2 = _build(NORM, spec.norm, spec)
        self.ffn = _build(FFN, spec.ffn, spec)
        self.drop = nn.Dropout(spec.dropout)


@PLACEMENT.register("pre")
class PreNormBlock(Block):
    """x + f(norm(x)): the residual stream itself is never normalized (GPT-2 and later)."""

    def forward(self, x: torch.Tensor, pos: PositionalEncoding) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), pos))
        return x + self.drop(self.ffn(self.norm2(x)))


@PLACEMENT.register("post")
class PostNormBlock(Block):
    """norm(x + f(x)): the original Transformer; outputs are already normalized, so no final norm."""

    final_norm = False

    def forward(self, x: torch.Tensor, pos: PositionalEncoding) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, pos)))
        return self.norm2(x + self.drop(self.ffn(x)))


class TransformerLM(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.token_embedding = nn.Embedding(spec.vocab_size, spec.d_model)
        self.pos_enc = _build(POS_ENC, spec.pos_enc, spec)
        self.drop = nn.Dropout(spec.dropout)
        block_cls = PLACEMENT.get(spec.placement.name)
        self.blocks = nn.ModuleList(block_cls(spec, layer) for layer in range(spec.n_layers))
        self.final_norm = _build(NORM, spec.norm, spec) if block_cls.final_norm else nn.Identity()
        self.head = nn.Linear(spec.d_model, spec.vocab_size, bias=False)
        if spec.tie_embeddings:
            self.head.weight = self.token_embedding.weight
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
        if idx.shape[1] > self.spec.block_size:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds model.block_size={self.spec.block_size}")
        x = self.drop(self.pos_enc.embed(self.token_embedding(idx)))
        for block in self.blocks:
            x = block(x, self.pos_enc)
        return self.head(self.final_norm(x))


def embedding_parameters(model: TransformerLM) -> int:
    """Parameters of lookup tables (token and learned position embeddings); a tied head counts once, here."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())  # .parameters() yields a tied weight once
    return {"total": total, "non_embedding": total - embedding_parameters(model)}


def flops_per_token(model: TransformerLM) -> int:
    """Training FLOPs per token at full context: 3 × forward (backward costs twice the forward), where forward =
    2·N for the matmuls of the non-embedding parameters and the head, plus each layer's score and value products
    (`context_flops`: dense 4·T·d, fewer for sparse and linear variants) (PaLM, appendix B)."""
    spec = model.spec
    n = count_parameters(model)["non_embedding"] + spec.vocab_size * spec.d_model  # the head matmul
    return 6 * n + 3 * sum(block.attn.context_flops(spec.block_size) for block in model.blocks)
