"""End to end: a tiny training run on your own text files with a BPE tokenizer trained on them."""

from __future__ import annotations

import json

import ablate


def test_tiny_run_on_text_files_with_bpe(tmp_path, text_dir):
    overrides = ["model=tiny", "train=smoke", "logger=none", "device=cpu", "data=text", f"data.path={text_dir}",
                 "data.val_fraction=0.2", "data.sampling=sequential", "tokenizer=bpe", "tokenizer.vocab_size=384",
                 f"data.cache_dir={tmp_path / 'cache'}"]
    summary = ablate.train(ablate.compose([*overrides, f"out_dir={tmp_path / 'run'}"]), overrides)
    assert summary["status"] == "completed"
    assert summary["final/val_loss"] < 6.0  # ln(384) = 5.95 is chance; 20 steps learn something
    [cache] = (tmp_path / "cache" / "tokens").glob("text-*[!k]")  # the cache dir, not its .lock
    assert (cache / "tokenizer.json").exists()
    assert json.loads((cache / "meta.json").read_text())["vocab_size"] == 384
    assert (tmp_path / "run" / "sample.txt").read_text()
