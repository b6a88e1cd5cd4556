"""Tokenizers: byte and BPE round-trips on multilingual text, vocab size, document separators, sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ablate.data import load_tokens
from ablate.data.tokenizer import BpeTokenizer, ByteTokenizer
from tests.data.corpora import data_config, sentences

MULTILINGUAL = [
    "السلام عليكم، شنو كتدير اليوم؟ واش مشيتي للسوق",  # Moroccan Darija, Arabic script
    "salam labas 3lik, wach nta mzyan?",  # Darija in Latin script with digits
    "Ceci n'est pas une pipe — déjà vu, naïve façade.",
    "日本語のテキストと中文字符",
    "emoji 🙂👍🏽 and ZWJ 👨‍👩‍👧 sequences",
    "tabs\tand  double  spaces\n\nnew lines \r\n and a NUL \x00 byte",
    "ⵜⴰⵎⴰⵣⵉⵖⵜ (Tifinagh) and עברית and हिन्दी",
    "literal <|endoftext|> inside a text",
    "",
]


@pytest.fixture(scope="module")
def english_bpe():
    """Trained on English only: every other script must still round-trip through the byte alphabet."""
    return BpeTokenizer.train(["the cat sat on the mat and the dog ran home " * 20] * 50, 300, ["<|endoftext|>"])


@pytest.mark.parametrize("text", MULTILINGUAL)
def test_bpe_round_trip_on_unseen_scripts(english_bpe, text):
    assert english_bpe.decode(english_bpe.encode(text)) == text


def test_bpe_round_trip_after_training_on_multilingual_text():
    bpe = BpeTokenizer.train(sentences(3000, seed=6), 1024, ["<|endoftext|>"])
    for text in MULTILINGUAL + sentences(50, seed=99):
        ids = bpe.encode(text)
        assert bpe.decode(ids) == text
        assert ids.max(initial=0) < 1024
    darija = "السلام عليكم شنو كتدير اليوم"
    assert len(bpe.encode(darija)) < len(darija.encode("utf-8")) / 2  # merges learned for Arabic script


def test_byte_round_trip():
    byte = ByteTokenizer()
    for text in MULTILINGUAL:
        assert byte.decode(byte.encode(text)) == text


def test_trained_vocab_is_exactly_the_configured_size_and_documents_are_separated(text_dir):
    data, tok = data_config(["data=text", f"data.path={text_dir}", "data.val_fraction=0.2", "tokenizer=bpe",
                             "tokenizer.vocab_size=400"])
    tokens = load_tokens(data, tok, 64)
    assert tokens.tokenizer.vocab_size == 400
    meta = json.loads((tokens.cache_dir / "meta.json").read_text())
    eot = tokens.tokenizer.eot_id
    assert eot == 0  # the first special token
    for split in ("train", "val"):
        ids = np.asarray(getattr(tokens, split))
        assert ids.max() < 400
        assert int((ids == eot).sum()) == meta["documents"][split]  # one separator after every document
        assert ids[-1] == eot


def test_a_corpus_that_runs_out_of_merges_gives_fewer_ids_never_more(text_dir):
    # ~60 distinct words cannot fill 5000 ids: the model keeps 5000 rows, some never used
    data, tok = data_config(["data=text", f"data.path={text_dir}", "data.val_fraction=0.2", "tokenizer=bpe",
                             "tokenizer.vocab_size=5000"])
    tokens = load_tokens(data, tok, 64)
    assert 256 < tokens.tokenizer.vocab_size < 5000
    assert int(np.asarray(tokens.train).max()) < tokens.tokenizer.vocab_size


def test_sample_bytes_limits_what_the_tokenizer_learns_from(text_dir):
    data, tok = data_config(["data=text", f"data.path={text_dir}", "data.val_fraction=0.2", "tokenizer=bpe",
                             "tokenizer.vocab_size=600", "tokenizer.sample_bytes=20000"])
    tokens = load_tokens(data, tok, 64)
    meta = json.loads((tokens.cache_dir / "meta.json").read_text())
    assert 20000 <= meta["tokenizer_sample_bytes"] < 40000  # stops at the document that crosses the limit
    assert sum(meta["characters"].values()) > 100_000  # yet the whole corpus is tokenized
    text = tokens.tokenizer.decode(np.asarray(tokens.train[:2000]))
    assert "<|endoftext|>" in text


def test_bpe_vocab_below_the_byte_alphabet_is_rejected_in_one_line():
    from ablate.data import check_data_config

    data, tok = data_config(["tokenizer=bpe", "tokenizer.vocab_size=200"])
    assert check_data_config(data, tok, 64) == [
        "tokenizer.vocab_size=200 must be >= 257 (256 byte symbols + the special tokens)"]
