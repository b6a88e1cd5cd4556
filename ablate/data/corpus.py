"""Corpora: where documents come from, split deterministically into train and val, each with a fingerprint
that changes whenever the text would."""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# Directories of the standard library that are not the library's own source.
_SKIP_DIRS = {"site-packages", "__pycache__", "dist-packages"}
_TEST_DIRS = {"test", "tests", "idle_test"}


@dataclass(frozen=True)
class Document:
    name: str
    text: str


def in_val_split(name: str, val_fraction: float) -> bool:
    """Whole documents go to val by a hash of their name, so the split never depends on file order or count."""
    bucket = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    return bucket < val_fraction


class StdlibCorpus:
    """The Python standard library's own source: ~12 MB of text present with every interpreter, no download."""

    def __init__(self, include_tests: bool = False, max_bytes: int | None = None):
        self.root = Path(sysconfig.get_paths()["stdlib"])
        self.include_tests = include_tests
        self.max_bytes = max_bytes
        self.files = self._list_files()

    def _list_files(self) -> list[Path]:
        skip = _SKIP_DIRS | (set() if self.include_tests else _TEST_DIRS)
        files = []
        for directory, subdirs, names in os.walk(self.root):
            subdirs[:] = sorted(d for d in subdirs if d not in skip)
            files += [Path(directory) / n for n in sorted(names) if n.endswith(".py")]
        return files

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"stdlib|{sys.version}|tests={self.include_tests}|max={self.max_bytes}".encode())
        for path in self.files:
            h.update(f"{path.relative_to(self.root)}:{path.stat().st_size}\n".encode())
        return h.hexdigest()[:16]

    def documents(self) -> Iterator[Document]:
        total = 0
        for path in self.files:
            text = path.read_bytes().decode("utf-8", errors="replace")
            total += len(text)
            if self.max_bytes is not None and total > self.max_bytes:
                return
            yield Document(str(path.relative_to(self.root)), text)
