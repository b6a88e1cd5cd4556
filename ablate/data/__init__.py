"""Data: corpus -> tokenizer -> token cache (memmap, built once) -> batches.

Sources (conf/data/): stdlib (offline default), text (your files, WhatsApp exports), hf / tinystories / atlaset
(`datasets`), and the synthetic recall task mqar. The trainer calls `load_tokens` and then asks the result for
`train_batches` and `val_batches`; it never needs to know which source it got.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ablate.data.batches import ORDERS, SAMPLERS, fixed_eval_batches
from ablate.data.build import tokenize_corpus
from ablate.data.cache import SPLITS, TokenCache
from ablate.data.corpus import DataError, StdlibCorpus
from ablate.data.files import TextCorpus, list_files
from ablate.data.hub import HubCorpus
from ablate.data.mqar import RecallData, check_mqar_config, load_recall
from ablate.data.tokenizer import check_tokenizer_config, load_tokenizer, tokenizer_settings, vocab_size_for

log = logging.getLogger(__name__)

SOURCES = {"stdlib": StdlibCorpus, "text": TextCorpus, "hf": HubCorpus, "tinystories": HubCorpus,
           "atlaset": HubCorpus}
MQAR_KNOBS = ("num_kv_pairs", "seq_len", "vocab_size", "power_a", "random_non_queries", "num_train_examples",
              "num_val_examples")
# Knobs every data option has; the rest are the source's own (its constructor's arguments).
COMMON_KNOBS = ("name", "val_fraction", "cache_dir", "seed", "sampling", "order")

__all__ = ["DataError", "TokenData", "RecallData", "check_data_config", "load_tokens", "vocab_size_of_config"]


@dataclass
class TokenData:
    train: np.ndarray
    val: np.ndarray
    tokenizer: object
    cache_dir: Path
    built: bool  # whether this call tokenized the corpus (False: reused the cache)
    sampling: str = "random"
    seed: int = 0
    reports_recall: bool = False

    def train_batches(self, batch_size: int, block_size: int):
        """An object whose next() gives the next (inputs, targets) training batch, and state()/load_state()."""
        return SAMPLERS[self.sampling](self.train, batch_size, block_size, self.seed)

    def val_batches(self, n_batches: int, batch_size: int, block_size: int):
        return fixed_eval_batches(self.val, n_batches, batch_size, block_size)


def vocab_size_of_config(data: DictConfig, tokenizer: DictConfig) -> int:
    """The model's vocabulary, known before any data is read: the task's own for mqar, else the tokenizer's."""
    return int(data.vocab_size) if data.name == "mqar" else vocab_size_for(tokenizer)


def _source_knobs(data: DictConfig) -> dict:
    return {k: v for k, v in data.items() if k not in COMMON_KNOBS}


def check_data_config(data: DictConfig, tokenizer: DictConfig, block_size: int) -> list[str]:
    """One line per problem with the data and tokenizer config, before any work starts."""
    problems = []
    known = sorted([*SOURCES, "mqar"])
    if data.name not in known:
        return [f"data={data.name} is not a known source; choose one of {', '.join(known)}"]
    if data.name == "mqar":
        allowed, common = MQAR_KNOBS, ("sampling", "seed", "order")
    else:
        allowed = [p for p in inspect.signature(SOURCES[data.name].__init__).parameters if p != "self"]
        common = COMMON_KNOBS[1:]
    for knob in _source_knobs(data):
        if knob not in allowed:
            problems.append(f"data.{knob} is not a knob of data={data.name}; its knobs are: "
                            f"{', '.join([*common, *allowed])}")
    if data.get("sampling", "random") not in SAMPLERS:
        problems.append(f"data.sampling={data.sampling} is not known; choose one of {', '.join(SAMPLERS)}")
    if data.get("order", "seed") not in ORDERS:
        problems.append(f"data.order={data.order} is not known; choose one of {', '.join(ORDERS)} (seed: the "
                        "run's seed picks the batch order; fixed: data.seed alone)")
    if data.name == "mqar":
        return problems + ([] if problems else check_mqar_config(data, block_size))

    problems += check_tokenizer_config(tokenizer)
    if not 0.0 < float(data.val_fraction) < 1.0:
        problems.append(f"data.val_fraction={data.val_fraction} must be between 0 and 1 (exclusive)")
    if data.get("max_bytes") is not None and int(data.max_bytes) <= 0:
        problems.append(f"data.max_bytes={data.max_bytes} must be > 0 (or null for all)")
    if data.name == "text" and not data.get("path"):
        problems.append("data=text cannot run without data.path=<a file, a directory or a glob of "
                        ".txt/.jsonl/.parquet>")
    elif data.name == "text":
        problems += _check_text_files(str(data.path), block_size)
    if data.name in ("hf", "tinystories", "atlaset") and not data.get("dataset"):
        problems.append(f"data={data.name} cannot run without data.dataset=<a Hub id or a local path>")
    return problems


def _check_text_files(path: str, block_size: int) -> list[str]:
    """Files that exist, and enough bytes for one window in each split: a split has at most as many tokens as the
    corpus has bytes (byte-level ids; BPE merges only shorten), so fewer bytes than two windows cannot train."""
    files = list_files(path)[1]
    if not files:
        return [f"data.path={path} names no file (a file, a directory or a glob of .txt/.jsonl/.parquet); check "
                "the path"]
    size = sum(f.stat().st_size for f in files)
    if size < 2 * (block_size + 2):
        return [f"data.path={path} holds {size} bytes, too few for one window of model.block_size+1="
                f"{block_size + 1} tokens in both the train and val split; use more text or a smaller block_size"]
    return []


def load_tokens(data: DictConfig, tokenizer_cfg: DictConfig, block_size: int) -> TokenData | RecallData:
    """Tokenize the corpus into the shared cache (once) and memmap its splits."""
    if data.name == "mqar":
        return load_recall(data)
    source = SOURCES[data.name](**_source_knobs(data))
    settings = f"{source.fingerprint()}|{tokenizer_settings(tokenizer_cfg)}|val={data.val_fraction}"
    key = f"{data.name}-{hashlib.sha256(settings.encode()).hexdigest()[:16]}"
    cache = TokenCache(Path(str(data.cache_dir)).expanduser(), key)

    def write_splits(tmp: Path) -> dict:
        meta = tokenize_corpus(tmp, source, tokenizer_cfg, float(data.val_fraction), str(data.name))
        return {**meta, "settings": settings}

    built = cache.build_once(write_splits)
    meta = cache.meta()
    if built:
        log.info("data=%s: tokenized %s documents into %s tokens in %.1f s; corpus stats %s", data.name,
                 meta["documents"], meta["tokens"], meta["build_seconds"], meta["corpus_stats"])
    tokenizer = load_tokenizer(tokenizer_cfg, cache.dir)
    if tokenizer.vocab_size > vocab_size_for(tokenizer_cfg):  # a cache from a different config: never index past
        raise DataError(f"token cache {cache.dir} has {tokenizer.vocab_size} ids, more than the configured "
                        f"{vocab_size_for(tokenizer_cfg)}; delete it and run again")
    splits = {s: cache.split(s) for s in SPLITS}
    for split, tokens in splits.items():
        if len(tokens) < block_size + 2:
            raise DataError(
                f"data={data.name}: the {split} split has {len(tokens)} tokens, fewer than one window of "
                f"model.block_size+1={block_size + 1}; use more text, a smaller block_size, or adjust data.val_fraction"
            )
    return TokenData(splits["train"], splits["val"], tokenizer, cache.dir, built,
                     sampling=str(data.get("sampling", "random")), seed=int(data.seed))
