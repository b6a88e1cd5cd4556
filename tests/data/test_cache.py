"""The token cache: built once and reused, keyed by source and tokenizer, safe under concurrent builders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import ablate.data
from ablate.data import load_tokens
from ablate.data.cache import TokenCache, token_dtype
from tests.data.corpora import data_config

REPO = Path(__file__).resolve().parents[2]


def _bpe_text(text_dir, cache_dir, *extra):
    return data_config(["data=text", f"data.path={text_dir}", "data.val_fraction=0.2", f"data.cache_dir={cache_dir}",
                        "tokenizer=bpe", "tokenizer.vocab_size=400", *extra])


def test_second_load_reuses_the_cache_without_tokenizing(text_dir, tmp_path, monkeypatch):
    data, tok = _bpe_text(text_dir, tmp_path)
    first = load_tokens(data, tok, 64)
    assert first.built and (first.cache_dir / "tokenizer.json").exists()
    files = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first.cache_dir.iterdir()}

    def must_not_run(*args, **kwargs):
        raise AssertionError("the corpus was tokenized again")

    monkeypatch.setattr(ablate.data, "tokenize_corpus", must_not_run)
    second = load_tokens(data, tok, 64)
    assert not second.built and second.cache_dir == first.cache_dir
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in second.cache_dir.iterdir()} == files
    assert np.array_equal(second.train, first.train) and np.array_equal(second.val, first.val)
    text = "شنو كتدير؟ the cat"
    assert second.tokenizer.encode(text).tolist() == first.tokenizer.encode(text).tolist()  # the saved tokenizer


def test_key_changes_with_tokenizer_settings_and_source_files(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("some text to tokenize. " * 1000)  # long: its tail is val
    byte = load_tokens(*data_config(["data=text", f"data.path={corpus}", "data.val_fraction=0.3"]), 64)
    bpe = load_tokens(*data_config(["data=text", f"data.path={corpus}", "data.val_fraction=0.3", "tokenizer=bpe",
                                    "tokenizer.vocab_size=300"]), 64)
    assert byte.cache_dir != bpe.cache_dir
    time.sleep(0.01)
    (corpus / "a.txt").write_text("other text to tokenize. " * 1000)
    edited = load_tokens(*data_config(["data=text", f"data.path={corpus}", "data.val_fraction=0.3"]), 64)
    assert edited.built and edited.cache_dir != byte.cache_dir


def test_uint16_when_the_vocab_fits_else_uint32(text_dir, tmp_path):
    assert token_dtype(256) == np.uint16 and token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    small = load_tokens(*_bpe_text(text_dir, tmp_path), 64)
    big = load_tokens(*_bpe_text(text_dir, tmp_path, "tokenizer.vocab_size=70000"), 64)
    for tokens, dtype in ((small, np.uint16), (big, np.uint32)):
        meta = json.loads((tokens.cache_dir / "meta.json").read_text())
        assert tokens.train.dtype == dtype and meta["dtype"] == np.dtype(dtype).name
        assert (tokens.cache_dir / "train.bin").stat().st_size == meta["tokens"]["train"] * np.dtype(dtype).itemsize


def test_leftovers_of_a_killed_builder_are_cleared(tmp_path):
    cache = TokenCache(tmp_path, "key")
    (tmp_path / "tokens" / ".key.dead-builder").mkdir(parents=True)
    (tmp_path / "tokens" / "key").mkdir()  # renamed into place but without meta.json: not a cache

    def write(tmp: Path) -> dict:
        (tmp / "train.bin").write_bytes(np.arange(10, dtype=np.uint16).tobytes())
        (tmp / "val.bin").write_bytes(b"")
        return {"dtype": "uint16", "tokens": {"train": 10, "val": 0}}

    assert cache.build_once(write)
    assert sorted(p.name for p in (tmp_path / "tokens").iterdir()) == ["key", "key.lock"]
    assert cache.split("train").tolist() == list(range(10)) and len(cache.split("val")) == 0


BUILDER = """
import json, os, sys, time
from pathlib import Path
from omegaconf import OmegaConf
from ablate.data import load_tokens
data, tok = OmegaConf.create(sys.argv[1]), OmegaConf.create(sys.argv[2])
Path(sys.argv[3]).touch()
while not Path(sys.argv[4]).exists():
    time.sleep(0.002)
tokens = load_tokens(data, tok, 64)
print(json.dumps({"built": tokens.built, "dir": str(tokens.cache_dir), "train": tokens.train.tolist()}))
"""


def test_two_processes_starting_together_build_one_valid_cache(text_dir, tmp_path):
    from omegaconf import OmegaConf

    data, tok = _bpe_text(text_dir, tmp_path / "cache")
    args = [OmegaConf.to_yaml(data, resolve=True), OmegaConf.to_yaml(tok)]
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, *args, str(tmp_path / f"ready{i}"), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    deadline = time.time() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.time() < deadline and all(p.poll() is None for p in procs), procs[0].stderr.read()
        time.sleep(0.01)
    go.touch()  # both released at once: they race for the lock
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["dir"] == results[1]["dir"] and results[0]["train"] == results[1]["train"]
    tokens_dir = tmp_path / "cache" / "tokens"
    key = Path(results[0]["dir"]).name
    assert sorted(p.name for p in tokens_dir.iterdir()) == [key, f"{key}.lock"]  # no second or half-written copy
    assert load_tokens(data, tok, 64).train.tolist() == results[0]["train"]
