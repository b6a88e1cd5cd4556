"""One pass over a corpus into a token cache directory: split each document, train the tokenizer if it needs it,
encode in batches, append to train.bin / val.bin.

A trained tokenizer learns from the train documents seen first, up to `sample_bytes`; those (and any val documents
met meanwhile) wait in memory until it is trained, then everything streams. So a corpus of any size is read once.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ablate.data.cache import SPLITS, TokenWriter, token_dtype
from ablate.data.corpus import DataError, split_document
from ablate.data.tokenizer import (
    TOKENIZER_FILE,
    ByteTokenizer,
    load_tokenizer,
    needs_training,
    sample_limit,
    train_tokenizer,
    vocab_size_for,
)

BATCH_CHARS = 1_000_000  # texts per encode call: enough to keep all cores busy, little memory


class _Encoder:
    """Per-split batches of texts -> ids (each document followed by the end-of-text id, if any) -> the split file."""

    def __init__(self, out_dir: Path, tokenizer, dtype: np.dtype):
        self.tokenizer = tokenizer
        self.writers = {s: TokenWriter(out_dir / f"{s}.bin", dtype) for s in SPLITS}
        self.pending: dict[str, list[str]] = {s: [] for s in SPLITS}
        self.pending_chars = {s: 0 for s in SPLITS}

    def add(self, split: str, text: str) -> None:
        self.pending[split].append(text)
        self.pending_chars[split] += len(text)
        if self.pending_chars[split] >= BATCH_CHARS:
            self.flush(split)

    def flush(self, split: str) -> None:
        texts, self.pending[split], self.pending_chars[split] = self.pending[split], [], 0
        if not texts:
            return
        eot = self.tokenizer.eot_id
        for ids in self.tokenizer.encode_batch(texts):
            self.writers[split].write(ids if eot is None else np.append(ids, eot))

    def close(self) -> dict[str, int]:
        for split in SPLITS:
            self.flush(split)
            self.writers[split].close()
        return {s: w.count for s, w in self.writers.items()}


def tokenize_corpus(out_dir: Path, source, tokenizer_cfg: DictConfig, val_fraction: float, label: str) -> dict:
    """Write train.bin, val.bin (and tokenizer.json for a trained tokenizer) into out_dir; returns the metadata."""
    started = time.perf_counter()
    dtype = token_dtype(vocab_size_for(tokenizer_cfg))
    documents, chars = Counter(), Counter()
    encoder = None if needs_training(tokenizer_cfg) else _Encoder(out_dir, ByteTokenizer(), dtype)
    waiting: list[tuple[str, str]] = []  # (split, text) read before the tokenizer exists
    sample_bytes, limit = 0, sample_limit(tokenizer_cfg)

    def start_encoding() -> _Encoder:
        # a corpus whose only text went to val is too small anyway: train on it so the size check can say so
        sample = [text for split, text in waiting if split == "train"] or [text for _, text in waiting]
        if not any(sample):
            raise DataError(f"data={label}: the corpus has no text (corpus stats: {dict(source.stats)})")
        train_tokenizer(tokenizer_cfg, sample).save(out_dir / TOKENIZER_FILE)
        started_encoder = _Encoder(out_dir, load_tokenizer(tokenizer_cfg, out_dir), dtype)
        for split, text in waiting:
            started_encoder.add(split, text)
        waiting.clear()
        return started_encoder

    for doc in source.documents():
        for split, text in split_document(doc, val_fraction):
            documents[split] += 1
            chars[split] += len(text)
            if encoder is not None:
                encoder.add(split, text)
                continue
            waiting.append((split, text))
            if split == "train":
                sample_bytes += len(text.encode("utf-8"))
                if limit is not None and sample_bytes >= limit:
                    encoder = start_encoding()
    if encoder is None:
        encoder = start_encoding()
    tokens = encoder.close()
    if not any(tokens.values()):
        raise DataError(f"data={label}: the corpus has no text (corpus stats: {dict(source.stats)})")
    return {
        "source": label,
        "dtype": dtype.name,
        "tokens": tokens,
        "vocab_size": encoder.tokenizer.vocab_size,
        "documents": {s: documents[s] for s in SPLITS},  # a long text split in two counts in each
        "characters": {s: chars[s] for s in SPLITS},
        "tokenizer_sample_bytes": sample_bytes if needs_training(tokenizer_cfg) else None,
        "corpus_stats": dict(source.stats),
        "build_seconds": round(time.perf_counter() - started, 3),
    }
