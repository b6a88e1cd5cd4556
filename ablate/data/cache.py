"""The token cache: each split tokenized once into a memmapped file, keyed by corpus fingerprint + tokenizer
settings, shared by every job of a sweep. Built in a temporary directory under a lock, then renamed into place,
so a reader never sees a half-written cache and two concurrent builders never both build it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class TokenCache:
    def __init__(self, root: str | os.PathLike, key: str):
        self.dir = Path(root) / "tokens" / key

    def ready(self) -> bool:
        return (self.dir / "meta.json").exists()

    def meta(self) -> dict:
        return json.loads((self.dir / "meta.json").read_text())

    def split(self, name: str) -> np.ndarray:
        meta = self.meta()
        return np.memmap(self.dir / f"{name}.bin", dtype=meta["dtype"], mode="r", shape=(meta["tokens"][name],))

    def build_once(self, write_splits: Callable[[Path], dict]) -> bool:
        """Run `write_splits(tmp_dir) -> meta` unless the cache exists; returns whether this call built it."""
        if self.ready():
            return False
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dir.parent / f"{self.dir.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits here, then finds the cache ready
            if self.ready():
                return False
            tmp = Path(tempfile.mkdtemp(dir=self.dir.parent, prefix=f".{self.dir.name}."))
            try:
                meta = write_splits(tmp)
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
                os.replace(tmp, self.dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return True


def write_tokens(path: Path, chunks: Iterable[np.ndarray], dtype: np.dtype) -> int:
    """Append token chunks to a flat binary file; returns the token count."""
    count = 0
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(np.asarray(chunk, dtype=dtype).tobytes())
            count += len(chunk)
    return count
