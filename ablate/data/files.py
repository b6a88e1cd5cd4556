"""Your own text: `data=text data.path=...` names a file, a directory or a glob of .txt / .jsonl / .parquet.

A .txt file is one document (a long one holds out its tail for val, so even one file feeds both splits); a .jsonl
line or a .parquet row is one document (its `text_field`). `format=whatsapp` reads .txt files as chat exports
(see whatsapp.py).
Empty files, undecodable bytes, bad JSON lines and files that clean down to nothing are counted, never fatal.
"""

from __future__ import annotations

import glob
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Iterator

from ablate.data.corpus import LONG_TEXT_CHARS, DataError, Document, decode_utf8, files_fingerprint, take_bytes
from ablate.data.whatsapp import clean_chat

TEXT_SUFFIXES = {".txt", ".text", ".md"}
JSON_SUFFIXES = {".jsonl", ".ndjson", ".json"}
PARQUET_SUFFIXES = {".parquet"}
FORMATS = ("plain", "whatsapp")
# Bump when cleaning or reading changes what text a file yields: the token cache key includes it.
READER_VERSION = 2


def list_files(path: str) -> tuple[Path, list[Path]]:
    """(base, files): the files `path` names (itself, every readable file under a directory with hidden ones
    skipped, or a glob's matches) and the directory their document names are relative to, so the train/val split
    is the same wherever the corpus sits."""
    expanded = Path(path).expanduser()
    if any(c in str(expanded) for c in "*?["):
        fixed = [part for part in itertools.takewhile(lambda p: not any(c in p for c in "*?["), expanded.parts)]
        found = sorted(p for p in map(Path, glob.glob(str(expanded), recursive=True)) if p.is_file())
        return Path(*fixed), found
    if expanded.is_dir():
        readable = TEXT_SUFFIXES | JSON_SUFFIXES | PARQUET_SUFFIXES
        found = sorted(p for p in expanded.rglob("*") if p.is_file() and p.suffix.lower() in readable
                       and not any(part.startswith(".") for part in p.relative_to(expanded).parts))
        return expanded, found
    return expanded.parent, [expanded] if expanded.is_file() else []


class TextCorpus:
    def __init__(self, path: str | None = None, format: str = "plain", text_field: str = "text",
                 keep_sender: bool = True, max_bytes: int | None = None):
        if not path:
            raise DataError("data=text cannot run without data.path=<a file, a directory or a glob of "
                            ".txt/.jsonl/.parquet>")
        if format not in FORMATS:
            raise DataError(f"data.format={format} is not known; choose one of {', '.join(FORMATS)}")
        self.path, self.format, self.text_field = str(path), format, text_field
        self.keep_sender, self.max_bytes = keep_sender, max_bytes
        self.stats: Counter = Counter()
        self.base, self.files = list_files(self.path)
        if not self.files:
            raise DataError(f"data.path={self.path} matches no file (.txt, .jsonl or .parquet)")

    def fingerprint(self) -> str:
        settings = (f"text|v{READER_VERSION}|{self.format}|field={self.text_field}|sender={self.keep_sender}"
                    f"|max={self.max_bytes}")
        return files_fingerprint(self.files, settings, self.base)

    def documents(self) -> Iterator[Document]:
        yield from take_bytes(self._all_documents(), self.max_bytes)

    def _all_documents(self) -> Iterator[Document]:
        for path in self.files:
            self.stats["files"] += 1
            if path.stat().st_size == 0:
                self.stats["empty_files"] += 1
                continue
            suffix = path.suffix.lower()
            if suffix in PARQUET_SUFFIXES:
                docs = self._parquet_rows(path)
            elif suffix in JSON_SUFFIXES:
                docs = self._json_rows(path)
            else:
                docs = self._text_file(path)
            produced = 0
            for doc in docs:
                produced += 1
                yield doc
            if produced == 0:
                self.stats["files_without_text"] += 1  # all cleaned away, or no usable row

    def _name(self, path: Path) -> str:
        return str(path.relative_to(self.base))

    def _text_file(self, path: Path) -> Iterator[Document]:
        text = decode_utf8(path.read_bytes(), self.stats)
        if self.format == "whatsapp":
            text = clean_chat(text, self.keep_sender, self.stats)
        if text.strip():
            yield Document(self._name(path), text, "tail" if len(text) > LONG_TEXT_CHARS else None)

    def _row_document(self, path: Path, row_number: int, row) -> Document | None:
        text = row.get(self.text_field) if isinstance(row, dict) else None
        if not isinstance(text, str):
            self.stats["rows_without_text_field"] += 1
            return None
        if not text.strip():
            self.stats["empty_rows"] += 1
            return None
        return Document(f"{self._name(path)}:{row_number}", text)

    def _json_rows(self, path: Path) -> Iterator[Document]:
        text = decode_utf8(path.read_bytes(), self.stats)
        if text.lstrip().startswith("["):  # a .json array rather than JSON Lines
            try:
                rows = json.loads(text)
            except json.JSONDecodeError:
                self.stats["bad_json_files"] += 1
                return
            lines = enumerate(rows)
        else:
            lines = enumerate(text.splitlines())
        for number, line in lines:
            if isinstance(line, str):
                if not line.strip():
                    continue
                try:
                    line = json.loads(line)
                except json.JSONDecodeError:
                    self.stats["bad_json_lines"] += 1
                    continue
            doc = self._row_document(path, number, line)
            if doc is not None:
                yield doc

    def _parquet_rows(self, path: Path) -> Iterator[Document]:
        import pyarrow.parquet as pq  # comes with `datasets`; imported here so other sources never pay for it

        try:
            parquet = pq.ParquetFile(path)
        except Exception:  # pyarrow raises several types for a corrupt file
            self.stats["bad_parquet_files"] += 1
            return
        if self.text_field not in parquet.schema_arrow.names:
            raise DataError(f"data.text_field={self.text_field} is not a column of {path}; "
                            f"its columns: {', '.join(parquet.schema_arrow.names)}")
        number = 0
        for batch in parquet.iter_batches(columns=[self.text_field], batch_size=4096):
            for text in batch.column(0).to_pylist():
                doc = self._row_document(path, number, {self.text_field: text})
                number += 1
                if doc is not None:
                    yield doc
