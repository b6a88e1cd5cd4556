"""Corpora: where documents come from, split deterministically into train and val, each with a fingerprint
that changes whenever the text would. Shared helpers for every source live here too."""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

# Directories of the standard library that are not the library's own source.
_SKIP_DIRS = {"site-packages", "__pycache__", "dist-packages"}
_TEST_DIRS = {"test", "tests", "idle_test"}

# A text longer than this (one big .txt file, one chat export) holds out its last val_fraction for val, so a
# single file still feeds both splits; shorter documents go whole to one split by a hash of their name.
LONG_TEXT_CHARS = 16_384


class DataError(ValueError):
    """The data cannot feed training (missing, empty, too short); the message says what and how to fix it."""


@dataclass(frozen=True)
class Document:
    name: str
    text: str
    # "train" / "val": the source's own split; "tail": the text's end goes to val (see split_document);
    # None: the whole document goes to one split by a hash of its name
    split: str | None = None


def in_val_split(name: str, val_fraction: float) -> bool:
    """Whole documents go to val by a hash of their name, so the split never depends on file order or count."""
    bucket = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    return bucket < val_fraction


def decode_utf8(raw: bytes, stats: Counter) -> str:
    """Text of a file's bytes; invalid UTF-8 becomes U+FFFD (counted), a leading BOM is dropped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        stats["invalid_utf8_files"] += 1
        text = raw.decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff")


def split_document(doc: Document, val_fraction: float) -> list[tuple[str, str]]:
    """(split, text) parts of a document: whole by its own split or by hash, or for split="tail" the last
    val_fraction of the text (cut at a line break when there is one) to val and the rest to train."""
    if doc.split in ("train", "val"):
        return [(doc.split, doc.text)]
    if doc.split != "tail" or len(doc.text) < 2:
        return [("val" if in_val_split(doc.name, val_fraction) else "train", doc.text)]
    target = min(len(doc.text) - 1, max(1, round(len(doc.text) * (1 - val_fraction))))
    cut = doc.text.rfind("\n", 0, target) + 1
    if cut <= max(0.0, len(doc.text) * (1 - 2 * val_fraction)):  # no line break near the target: cut mid-line
        cut = target
    return [("train", doc.text[:cut]), ("val", doc.text[cut:])]


def take_bytes(documents: Iterable[Document], max_bytes: int | None) -> Iterator[Document]:
    """Documents until their UTF-8 text reaches max_bytes in total (None: all); the last one is cut to fit."""
    if max_bytes is None:
        yield from documents
        return
    total = 0
    for doc in documents:
        room = max_bytes - total
        if room <= 0:
            return
        raw = doc.text.encode("utf-8")
        if len(raw) > room:  # cut on a character boundary: drop a partial last character
            raw = raw[:room]
            doc = Document(doc.name, raw.decode("utf-8", errors="ignore"), doc.split)
        total += len(raw)
        yield doc


def files_fingerprint(files: Iterable[Path], settings: str, base: Path | None = None) -> str:
    """Paths (relative to base), sizes and modification times: cheap to compute, and any edit to a file changes it."""
    h = hashlib.sha256(settings.encode())
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(base) if base else path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class StdlibCorpus:
    """The Python standard library's own source: ~12 MB of text present with every interpreter, no download."""

    def __init__(self, include_tests: bool = False, max_bytes: int | None = None):
        self.root = Path(sysconfig.get_paths()["stdlib"])
        self.include_tests = include_tests
        self.max_bytes = max_bytes
        self.stats: Counter = Counter()
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
        def whole_files() -> Iterator[Document]:
            for path in self.files:
                self.stats["files"] += 1
                yield Document(str(path.relative_to(self.root)), decode_utf8(path.read_bytes(), self.stats))

        yield from take_bytes(whole_files(), self.max_bytes)
