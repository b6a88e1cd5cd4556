"""Data: corpus -> tokenizer -> token cache (memmap, built once) -> batches."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ablate.data.cache import SPLITS, TokenCache, token_dtype, write_tokens
from ablate.data.corpus import StdlibCorpus, in_val_split
from ablate.data.tokenizer import TOKENIZERS, build_tokenizer

SOURCES = {"stdlib": StdlibCorpus}


class DataError(ValueError):
    """The data cannot feed training (e.g. too short); the message says what and how to fix it."""


@dataclass
class TokenData:
    train: np.ndarray
    val: np.ndarray
    tokenizer: object
    cache_dir: Path
    built: bool  # whether this call tokenized the corpus (False: reused the cache)


def check_data_config(data: DictConfig, tokenizer: DictConfig, block_size: int) -> list[str]:
    problems = []
    if data.name not in SOURCES:
        problems.append(f"data={data.name} is not a known source; choose one of {', '.join(sorted(SOURCES))}")
    if tokenizer.name not in TOKENIZERS:
        problems.append(f"tokenizer={tokenizer.name} is not known; choose one of {', '.join(sorted(TOKENIZERS))}")
    if not 0.0 < float(data.val_fraction) < 1.0:
        problems.append(f"data.val_fraction={data.val_fraction} must be between 0 and 1 (exclusive)")
    if data.get("max_bytes") is not None and int(data.max_bytes) <= 0:
        problems.append(f"data.max_bytes={data.max_bytes} must be > 0 (or null for all)")
    return problems


def _source(data: DictConfig):
    knobs = {k: v for k, v in data.items() if k not in ("name", "val_fraction", "cache_dir", "seed")}
    return SOURCES[data.name](**knobs)


def load_tokens(data: DictConfig, tokenizer_cfg: DictConfig, block_size: int) -> TokenData:
    """Tokenize the corpus into the shared cache (once) and memmap its splits."""
    source = _source(data)
    tokenizer = build_tokenizer(tokenizer_cfg)
    settings = f"{source.fingerprint()}|{tokenizer.settings()}|val={data.val_fraction}"
    key = f"{data.name}-{hashlib.sha256(settings.encode()).hexdigest()[:16]}"
    cache = TokenCache(Path(str(data.cache_dir)).expanduser(), key)
    dtype = token_dtype(tokenizer.vocab_size)

    def write_splits(tmp: Path) -> dict:
        counts = {}
        docs = list(source.documents())
        for split in SPLITS:
            chosen = (d for d in docs if in_val_split(d.name, float(data.val_fraction)) == (split == "val"))
            counts[split] = write_tokens(tmp / f"{split}.bin", (tokenizer.encode(d.text) for d in chosen), dtype)
        return {"source": data.name, "settings": settings, "dtype": dtype.name, "tokens": counts,
                "vocab_size": tokenizer.vocab_size, "documents": len(docs)}

    built = cache.build_once(write_splits)
    splits = {s: cache.split(s) for s in SPLITS}
    for split, tokens in splits.items():
        if len(tokens) < block_size + 2:
            raise DataError(
                f"data={data.name}: the {split} split has {len(tokens)} tokens, fewer than one window of "
                f"model.block_size+1={block_size + 1}; use more text, a smaller block_size, or adjust data.val_fraction"
            )
    return TokenData(splits["train"], splits["val"], tokenizer, cache.dir, built)
