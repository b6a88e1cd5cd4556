"""The token cache: each split tokenized once into a memmapped file, keyed by corpus fingerprint + tokenizer
settings, shared by every job of a sweep. Built in a temporary directory under a lock, then renamed into place,
so a reader never sees a half-written cache and two concurrent builders (joblib, SLURM) never both build it."""

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
    """The narrowest unsigned type holding every id: half the disk and memory of uint32 for vocabularies <= 65536."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class TokenCache:
    def __init__(self, root: str | os.PathLike, key: str):
        self.dir = Path(root) / "tokens" / key

    def ready(self) -> bool:
        # meta.json is written last inside the temporary directory, and the directory appears by one rename
        return (self.dir / "meta.json").exists()

    def meta(self) -> dict:
        return json.loads((self.dir / "meta.json").read_text())

    def split(self, name: str) -> np.ndarray:
        meta = self.meta()
        count = meta["tokens"][name]
        if count == 0:  # np.memmap refuses an empty file
            return np.zeros(0, dtype=meta["dtype"])
        return np.memmap(self.dir / f"{name}.bin", dtype=meta["dtype"], mode="r", shape=(count,))

    def build_once(self, write_splits: Callable[[Path], dict]) -> bool:
        """Run `write_splits(tmp_dir) -> meta` unless the cache exists; returns whether this call built it."""
        if self.ready():
            return False
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dir.parent / f"{self.dir.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits here, then finds the cache ready
            if self.ready():
                return False
            self._remove_leftovers()
            tmp = Path(tempfile.mkdtemp(dir=self.dir.parent, prefix=f".{self.dir.name}."))
            try:
                meta = write_splits(tmp)
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
                os.replace(tmp, self.dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return True

    def _remove_leftovers(self) -> None:
        """Temporary directories of builders that were killed mid-build: only the lock holder writes, so any
        that exist now are dead. A crash before the rename can also leave a directory without meta.json."""
        for stale in self.dir.parent.glob(f".{self.dir.name}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)


class TokenWriter:
    """Appends token chunks to a flat binary file of one dtype, counting them."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.file = open(path, "wb")
        self.dtype = dtype
        self.count = 0

    def write(self, chunk: np.ndarray) -> None:
        self.file.write(np.asarray(chunk, dtype=self.dtype).tobytes())
        self.count += len(chunk)

    def close(self) -> None:
        self.file.close()


def write_tokens(path: Path, chunks: Iterable[np.ndarray], dtype: np.dtype) -> int:
    """Write token chunks to a flat binary file; returns the token count."""
    writer = TokenWriter(path, dtype)
    try:
        for chunk in chunks:
            writer.write(chunk)
    finally:
        writer.close()
    return writer.count
