"""Datasets through Hugging Face `datasets`: a Hub id (data=tinystories, data=atlaset, data=hf) or a local copy.

`data.dataset` is either a Hub id (`roneneldan/TinyStories`) or a local path: a `save_to_disk` directory, a
folder of parquet/jsonl files (a cloned Hub dataset repo), or one such file. Local data is always read
streaming: the token cache is the copy that matters, a second one in ~/.cache/huggingface is waste.

Without the Hub (HF_HUB_OFFLINE=1, or no route to it) a Hub id fails at once with one line saying how to point
at local files, instead of `datasets` retrying for tens of seconds.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from ablate.data.corpus import DataError, Document, files_fingerprint, take_bytes

PROBE_TIMEOUT_S = 3.0
# Builders `datasets` uses for single local files, by suffix.
BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv",
            ".txt": "text"}
LOCAL_HINT = ("train on local files instead: data=text data.path=<a file, directory or glob of .txt/.jsonl/.parquet>, "
              "or data=hf data.dataset=<a save_to_disk directory, or a folder/file of parquet or jsonl>")
READER_VERSION = 1  # bump when reading changes what text a dataset yields (part of the token cache key)


def hub_offline() -> bool:
    """Offline as `datasets` sees it: HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) set."""
    import datasets.config

    return bool(datasets.config.HF_HUB_OFFLINE)


def hub_unreachable_reason() -> str | None:
    """None when a TCP connection to the Hub endpoint opens within PROBE_TIMEOUT_S, else why not. The probe runs in
    a thread because name resolution ignores socket timeouts and can hang far longer."""
    from huggingface_hub import constants

    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    outcome: dict[str, Any] = {}

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            outcome["ok"] = True
        except OSError as e:
            outcome["error"] = e

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    if outcome.get("ok"):
        return None
    error = outcome.get("error")
    return f"no connection to {host}:{port} ({error or f'no answer in {PROBE_TIMEOUT_S:.0f} s'})"


def load_hub_split(dataset: str, config: str | None, split: str, streaming: bool, revision: str | None):
    """One split of a Hub dataset. The only function here that talks to the Hub (tests replace it)."""
    reason = hub_unreachable_reason()
    if reason is not None and not hub_offline():
        raise DataError(f"data.dataset={dataset}: the Hugging Face Hub is unreachable: {reason}; if the dataset is "
                        f"already in your Hugging Face cache set HF_HUB_OFFLINE=1, else {LOCAL_HINT}")
    from datasets import load_dataset

    try:
        return load_dataset(dataset, config, split=split, streaming=streaming, revision=revision)
    except Exception as e:  # offline, `datasets` raises ConnectionError, FileNotFoundError, ... for a missing copy
        if reason is None:
            raise
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"data.dataset={dataset}: the Hugging Face Hub is unreachable ({reason}) and no local copy "
                        f"was found ({first_line}); {LOCAL_HINT}") from None


class HubCorpus:
    def __init__(self, dataset: str | None = None, config: str | None = None, text_field: str = "text",
                 splits: dict | None = None, streaming: bool = False, revision: str | None = None,
                 max_bytes: int | None = None):
        if not dataset:
            raise DataError("data=hf cannot run without data.dataset=<a Hub id such as roneneldan/TinyStories, "
                            "or a local path>")
        splits = dict(splits or {"train": "train", "val": None})
        self.dataset, self.config, self.text_field = str(dataset), config, text_field
        self.train_split, self.val_split = splits.get("train") or "train", splits.get("val")
        self.streaming, self.revision, self.max_bytes = streaming, revision, max_bytes
        self.stats: Counter = Counter()
        path = Path(self.dataset).expanduser()
        self.local = path if path.exists() else None

    def fingerprint(self) -> str:
        settings = (f"hf|v{READER_VERSION}|{self.dataset}|{self.config}|{self.revision}|{self.train_split}|"
                    f"{self.val_split}|field={self.text_field}|max={self.max_bytes}")
        if self.local is None:  # a Hub id: its settings (pin `revision` to notice upstream changes)
            return hashlib.sha256(settings.encode()).hexdigest()[:16]
        if self.local.is_file():
            return files_fingerprint([self.local], settings, self.local.parent)
        return files_fingerprint(sorted(p for p in self.local.rglob("*") if p.is_file()), settings, self.local)

    def documents(self) -> Iterator[Document]:
        # Without a val split, train rows go to val by a hash of their name; with one, each keeps its split.
        fixed = None if self.val_split is None else "train"
        yield from take_bytes(self._split_documents(self.train_split, fixed), self.max_bytes)
        if self.val_split is not None:
            yield from take_bytes(self._split_documents(self.val_split, "val"), self.max_bytes)

    def _open(self, split: str):
        if self.local is None:
            return load_hub_split(self.dataset, self.config, split, self.streaming, self.revision)
        import datasets

        if (self.local / "state.json").exists() or (self.local / "dataset_dict.json").exists():
            saved = datasets.load_from_disk(str(self.local))
            if isinstance(saved, datasets.DatasetDict):
                if split not in saved:
                    raise DataError(f"data.dataset={self.dataset} has no split {split!r}; its splits: "
                                    f"{', '.join(saved)} (set data.splits.train / data.splits.val)")
                saved = saved[split]
            elif split != self.train_split:
                raise DataError(f"data.dataset={self.dataset} is a single saved split; set data.splits.val=null")
            return saved.to_iterable_dataset()
        if self.local.is_file():
            if split != self.train_split:
                raise DataError(f"data.dataset={self.dataset} is a single file, one split; set data.splits.val=null")
            builder = BUILDERS.get(self.local.suffix.lower())
            if builder is None:
                raise DataError(f"data.dataset={self.dataset}: cannot read {self.local.suffix} files; use one of "
                                f"{', '.join(sorted(BUILDERS))}")
            return datasets.load_dataset(builder, data_files={split: str(self.local)}, split=split, streaming=True)
        try:
            return datasets.load_dataset(str(self.local), self.config, split=split, streaming=True)
        except ValueError as e:  # e.g. an unknown split name
            raise DataError(f"data.dataset={self.dataset}: {str(e).splitlines()[0]}") from None

    def _split_documents(self, split: str, fixed_split: str | None) -> Iterator[Document]:
        rows = self._open(split)
        columns = rows.column_names
        if columns is not None and self.text_field not in columns:
            raise DataError(f"data.text_field={self.text_field} is not a column of {self.dataset} ({split}); "
                            f"its columns: {', '.join(columns)}")
        number = 0
        for batch in rows.select_columns([self.text_field]).iter(batch_size=1000):
            for text in batch[self.text_field]:
                name = f"{split}/{number}"
                number += 1
                self.stats["rows"] += 1
                if not isinstance(text, str) or not text.strip():
                    self.stats["empty_rows"] += 1
                    continue
                yield Document(name, text, fixed_split)
