"""Fixtures for the data tests: files the tests write themselves (nothing downloaded)."""

from __future__ import annotations

import json

import pytest

from tests.data.corpora import paragraphs


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory):
    """A directory with a .txt file, a .jsonl and a .parquet file: ~150 KB of multilingual text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("texts")
    (root / "story.txt").write_text("\n".join(paragraphs(300, seed=1)), encoding="utf-8")
    with open(root / "rows.jsonl", "w", encoding="utf-8") as f:
        for text in paragraphs(300, seed=2):
            f.write(json.dumps({"text": text, "id": 1}, ensure_ascii=False) + "\n")
    pq.write_table(pa.table({"text": paragraphs(300, seed=3)}), root / "rows.parquet")
    return root
