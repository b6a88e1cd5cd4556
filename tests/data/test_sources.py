"""Every source on local fixtures: your files (txt / jsonl / parquet, dir / glob / file), datasets on disk, the Hub
configs with only the Hub itself replaced, and the fast one-line failure when the Hub cannot be reached."""

from __future__ import annotations

import json
import time

import pytest

import ablate
from ablate.data import DataError, check_data_config, load_tokens
from ablate.data import hub as hub_module
from ablate.data.files import TextCorpus
from ablate.data.hub import HubCorpus
from tests.data.corpora import data_config, paragraphs


def _names(corpus) -> list[str]:
    return [doc.name for doc in corpus.documents()]


def test_directory_reads_txt_jsonl_and_parquet(text_dir):
    corpus = TextCorpus(str(text_dir))
    names = _names(corpus)
    assert sum(":" in n and "rows.jsonl" in n for n in names) == 300
    assert sum(":" in n and "rows.parquet" in n for n in names) == 300
    assert sum(n.endswith("story.txt") for n in names) == 1
    assert corpus.stats["files"] == 3


def test_glob_and_single_file(text_dir):
    assert len(_names(TextCorpus(str(text_dir / "*.parquet")))) == 300
    assert len(_names(TextCorpus(str(text_dir / "rows.jsonl")))) == 300
    data, tok = data_config(["data=text", f"data.path='{text_dir}/*.jsonl'", "data.val_fraction=0.2"])
    tokens = load_tokens(data, tok, 64)
    assert len(tokens.train) > len(tokens.val) > 64


def test_bad_inputs_are_counted_never_fatal(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait, d\xe9j\xe0 vu. ".encode("latin-1") * 200)
    (tmp_path / "rows.jsonl").write_text('{"text": "fine row"}\n{broken json\n{"other": "no text field"}\n\n'
                                         '{"text": "   "}\n')
    (tmp_path / "bad.parquet").write_bytes(b"not a parquet file")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    corpus = TextCorpus(str(tmp_path))
    docs = list(corpus.documents())
    assert [d.name for d in docs] == ["latin1.txt", "rows.jsonl:0"]  # named relative to data.path
    assert "\ufffd" in docs[0].text
    assert corpus.stats["empty_files"] == 1
    assert corpus.stats["invalid_utf8_files"] == 1
    assert corpus.stats["bad_json_lines"] == 1
    assert corpus.stats["rows_without_text_field"] == 1
    assert corpus.stats["empty_rows"] == 1
    assert corpus.stats["bad_parquet_files"] == 1
    assert corpus.stats["files"] == 4  # the .bin file is not text: not read


def test_whatsapp_format_reads_chats_and_counts_files_that_clean_to_nothing(tmp_path):
    chat = "".join(f"12/31/23, 9:{i % 60:02d} PM - Amine: {line}\n" for i, line in enumerate(paragraphs(400)))
    (tmp_path / "WhatsApp Chat with Amine.txt").write_text(chat)
    (tmp_path / "only-system.txt").write_text("12/31/23, 9:40 PM - Messages and calls are end-to-end encrypted.\n")
    data, tok = data_config(["data=text", f"data.path={tmp_path}", "data.format=whatsapp", "data.keep_sender=false",
                             "data.val_fraction=0.2"])
    tokens = load_tokens(data, tok, 64)
    text = tokens.tokenizer.decode(tokens.train[:5000])
    assert "PM" not in text and "Amine:" not in text
    stats = json.loads((tokens.cache_dir / "meta.json").read_text())["corpus_stats"]
    assert stats["files_without_text"] == 1 and stats["chat_messages"] == 400


def test_corpus_too_small_for_the_block_is_one_clear_error(tmp_path):
    (tmp_path / "tiny.txt").write_text("hello there")
    data, tok = data_config(["data=text", f"data.path={tmp_path}"])
    with pytest.raises(DataError) as error:
        load_tokens(data, tok, 64)
    message = str(error.value)
    assert "\n" not in message and "fewer than one window" in message and "block_size" in message


def test_missing_path_is_one_clear_error(tmp_path):
    data, tok = data_config(["data=text", f"data.path={tmp_path}/nothing-here"])
    with pytest.raises(DataError, match="matches no file"):
        load_tokens(data, tok, 64)
    data, tok = data_config(["data=text"])
    assert check_data_config(data, tok, 64) == [
        "data=text cannot run without data.path=<a file, a directory or a glob of .txt/.jsonl/.parquet>"]


def test_unknown_knob_is_named(text_dir):
    data, tok = data_config(["data=text", f"data.path={text_dir}", "+data.feild=text"])
    [problem] = check_data_config(data, tok, 64)
    assert problem.startswith("data.feild is not a knob of data=text")


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory):
    """A DatasetDict with train and validation splits, written with save_to_disk."""
    import datasets

    root = tmp_path_factory.mktemp("hf-saved")
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": paragraphs(400, seed=7), "id": list(range(400))}),
        "validation": datasets.Dataset.from_dict({"text": paragraphs(60, seed=8), "id": list(range(60))}),
    }).save_to_disk(str(root))
    return root


def test_hf_save_to_disk_with_its_own_validation_split(saved_dataset):
    corpus = HubCorpus(str(saved_dataset), splits={"train": "train", "val": "validation"})
    docs = list(corpus.documents())
    assert sum(d.split == "train" for d in docs) == 400 and sum(d.split == "val" for d in docs) == 60
    data, tok = data_config(["data=hf", f"data.dataset={saved_dataset}", "data.splits.val=validation"])
    tokens = load_tokens(data, tok, 64)
    assert json.loads((tokens.cache_dir / "meta.json").read_text())["documents"] == {"train": 400, "val": 60}


def test_hf_parquet_folder_and_jsonl_file(tmp_path, text_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"story": paragraphs(200, seed=9)}), tmp_path / "train.parquet")
    pq.write_table(pa.table({"story": paragraphs(40, seed=10)}), tmp_path / "test.parquet")
    folder = HubCorpus(str(tmp_path), text_field="story", splits={"train": "train", "val": "test"})
    assert [sum(d.split == s for d in folder.documents()) for s in ("train", "val")] == [200, 40]
    single = HubCorpus(str(text_dir / "rows.jsonl"))  # val: by a hash of each row's name
    docs = list(single.documents())
    assert len(docs) == 300 and all(d.split is None for d in docs)
    with pytest.raises(DataError, match="data.text_field=body is not a column"):
        list(HubCorpus(str(tmp_path), text_field="body").documents())


def test_hf_streaming_local_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": paragraphs(300, seed=11)}), tmp_path / "train.parquet")
    data, tok = data_config(["data=hf", f"data.dataset={tmp_path}", "data.streaming=true", "data.max_bytes=20000",
                             "data.val_fraction=0.3"])
    tokens = load_tokens(data, tok, 64)
    assert 19_996 < len(tokens.train) + len(tokens.val) <= 20_000  # byte tokens: max_bytes stopped the stream


@pytest.mark.parametrize("option, hub_id, splits", [
    ("tinystories", "roneneldan/TinyStories", ("train", "validation")),
    ("atlaset", "atlasia/Atlaset", ("train", "test")),
])
def test_hub_configs_load_through_the_real_code(monkeypatch, tmp_path, option, hub_id, splits):
    """Only the Hub is mocked: `load_hub_split` (the one function that talks to it) returns rows from a local
    save_to_disk copy; reading, splitting, tokenizing and caching are the real code."""
    import datasets

    local = {splits[0]: datasets.Dataset.from_dict({"text": paragraphs(300, seed=12)}),
             splits[1]: datasets.Dataset.from_dict({"text": paragraphs(50, seed=13)})}
    calls = []

    def fake_hub(dataset, config, split, streaming, revision):
        calls.append((dataset, split))
        return local[split]

    monkeypatch.setattr(hub_module, "load_hub_split", fake_hub)
    cfg = ablate.compose(["model=tiny", f"data={option}", f"data.cache_dir={tmp_path}"])
    tokens = load_tokens(cfg.data, cfg.tokenizer, 64)
    assert calls == [(hub_id, splits[0]), (hub_id, splits[1])]
    meta = json.loads((tokens.cache_dir / "meta.json").read_text())
    assert meta["documents"] == {"train": 300, "val": 50}  # the dataset's own splits, not a hash split

    monkeypatch.undo()  # the Hub is gone again (HF_HUB_OFFLINE=1): the token cache alone serves later runs
    again = load_tokens(cfg.data, cfg.tokenizer, 64)
    assert not again.built and len(again.train) == len(tokens.train)


def test_hub_offline_fails_fast_in_one_line(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1: `datasets` gives up at once, and we say what to do instead
    cfg = ablate.compose(["model=tiny", "data=tinystories", f"data.cache_dir={tmp_path}"])
    started = time.perf_counter()
    with pytest.raises(DataError) as error:
        load_tokens(cfg.data, cfg.tokenizer, 64)
    assert time.perf_counter() - started < 10
    message = str(error.value)
    assert "\n" not in message and "unreachable" in message and "data=text data.path=" in message


def test_unreachable_hub_fails_fast_without_calling_datasets(monkeypatch):
    import datasets
    import datasets.config
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # a closed local port stands in for the Hub

    def no_retries(*args, **kwargs):
        raise AssertionError("load_dataset must not run (and retry) when the Hub is unreachable")

    monkeypatch.setattr(datasets, "load_dataset", no_retries)
    started = time.perf_counter()
    with pytest.raises(DataError) as error:
        list(HubCorpus("roneneldan/TinyStories").documents())
    assert time.perf_counter() - started < 5
    message = str(error.value)
    assert "\n" not in message and "127.0.0.1:9" in message and "HF_HUB_OFFLINE=1" in message
