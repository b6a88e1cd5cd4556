"""Tokenizers turn text into integer ids.

`byte` needs no training: its 256 ids are the UTF-8 bytes. `bpe` is a byte-level BPE trained with Hugging Face
`tokenizers` on the corpus's train split (or its first `sample_bytes`), saved next to the token cache it made and
loaded from there by every later run. Byte-level means every string round-trips: decode(encode(x)) == x.

The model's vocabulary is the configured `vocab_size`, known before any data is read (validation needs it).
The trained tokenizer has exactly that many ids unless the corpus runs out of merges first; then it has fewer,
and the model's extra rows are simply never used (never an id the model cannot embed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from omegaconf import DictConfig, OmegaConf

TOKENIZER_FILE = "tokenizer.json"


class ByteTokenizer:
    vocab_size = 256
    eot_id = None  # documents are joined as they are: adding a 257th id would break the 256-id contract

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class BpeTokenizer:
    def __init__(self, tokenizer, special_tokens: list[str]):
        self.tokenizer = tokenizer
        self.special_tokens = list(special_tokens)
        # The first special token separates documents in the token stream.
        self.eot_id = tokenizer.token_to_id(self.special_tokens[0]) if self.special_tokens else None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, special_tokens: list[str], min_frequency: int = 2
              ) -> "BpeTokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # no invented leading space
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(special_tokens),
            # all 256 byte symbols, seen in the sample or not: any later text (Arabic in a code corpus) still encodes
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer, special_tokens)

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path: Path, special_tokens: list[str]) -> "BpeTokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), special_tokens)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text).ids, dtype=np.uint32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        # encode_batch_fast skips offsets we never use, and runs on all cores
        return [np.asarray(e.ids, dtype=np.uint32) for e in self.tokenizer.encode_batch_fast(texts)]

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


TOKENIZERS = {"byte": ByteTokenizer, "bpe": BpeTokenizer}
# The keys each tokenizer's YAML may have besides `name`: anything else is a typo, refused by name.
TOKENIZER_KNOBS = {"byte": (), "bpe": ("vocab_size", "special_tokens", "sample_bytes", "min_frequency")}


def _specials(cfg: DictConfig) -> list[str]:
    tokens = cfg.get("special_tokens") or []
    return list(OmegaConf.to_container(tokens) if OmegaConf.is_config(tokens) else tokens)


def vocab_size_for(tokenizer_cfg: DictConfig) -> int:
    name = tokenizer_cfg.name
    if name not in TOKENIZERS:
        raise KeyError(f"tokenizer={name} is not a known option; choose one of {', '.join(sorted(TOKENIZERS))}")
    return int(tokenizer_cfg.vocab_size) if name == "bpe" else ByteTokenizer.vocab_size


def check_tokenizer_config(cfg: DictConfig) -> list[str]:
    if cfg.name not in TOKENIZERS:
        return [f"tokenizer={cfg.name} is not known; choose one of {', '.join(sorted(TOKENIZERS))}"]
    allowed = TOKENIZER_KNOBS[cfg.name]
    unknown = [k for k in cfg if k != "name" and k not in allowed]
    if unknown:
        return [f"tokenizer.{k} is not a knob of tokenizer={cfg.name}; its knobs are: {', '.join(allowed) or 'none'}"
                for k in unknown]
    if cfg.name != "bpe":
        return []
    problems = []
    floor = 256 + len(_specials(cfg))
    if int(cfg.vocab_size) < floor:
        problems.append(f"tokenizer.vocab_size={cfg.vocab_size} must be >= {floor} (256 byte symbols + the special "
                        "tokens)")
    if cfg.get("sample_bytes") is not None and int(cfg.sample_bytes) <= 0:
        problems.append(f"tokenizer.sample_bytes={cfg.sample_bytes} must be > 0 (or null: the whole train split)")
    return problems


def tokenizer_settings(cfg: DictConfig) -> str:
    """Everything that changes the ids a text gets: part of the token cache key."""
    if cfg.name != "bpe":
        return cfg.name
    import tokenizers

    return (f"bpe|vocab={int(cfg.vocab_size)}|special={_specials(cfg)}|sample={cfg.get('sample_bytes')}"
            f"|min_freq={int(cfg.get('min_frequency', 2))}|tokenizers={tokenizers.__version__}")


def needs_training(cfg: DictConfig) -> bool:
    return cfg.name == "bpe"


def sample_limit(cfg: DictConfig) -> int | None:
    """How many bytes of train text a trained tokenizer learns from (None: all of it)."""
    return None if cfg.get("sample_bytes") is None else int(cfg.sample_bytes)


def train_tokenizer(cfg: DictConfig, texts: list[str]) -> BpeTokenizer:
    return BpeTokenizer.train(texts, int(cfg.vocab_size), _specials(cfg), int(cfg.get("min_frequency", 2)))


def load_tokenizer(cfg: DictConfig, cache_dir: Path):
    """The tokenizer a token cache was built with: a trained one is read from the cache directory."""
    if cfg.name == "bpe":
        return BpeTokenizer.load(Path(cache_dir) / TOKENIZER_FILE, _specials(cfg))
    return ByteTokenizer()
