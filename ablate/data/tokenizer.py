"""Tokenizers turn text into integer ids. `byte` needs no training: its 256 ids are the UTF-8 bytes."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig


class ByteTokenizer:
    vocab_size = 256

    def settings(self) -> str:
        return "byte"

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


TOKENIZERS = {"byte": ByteTokenizer}


def vocab_size_for(tokenizer_cfg: DictConfig) -> int:
    name = tokenizer_cfg.name
    if name not in TOKENIZERS:
        raise KeyError(f"tokenizer={name} is not a known option; choose one of {', '.join(sorted(TOKENIZERS))}")
    return TOKENIZERS[name].vocab_size


def build_tokenizer(tokenizer_cfg: DictConfig) -> ByteTokenizer:
    return TOKENIZERS[tokenizer_cfg.name]()
