"""MQAR (Zoology): construction properties, the paper's constraints, and a tiny run reporting val/recall_acc."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ablate
from ablate.data import check_data_config, load_tokens
from ablate.data.mqar import IGNORE_INDEX, distinct_per_row, multiquery_ar
from ablate.config import validate


@pytest.fixture(scope="module")
def examples():
    return multiquery_ar(np.random.default_rng(0), num_examples=500, seq_len=64, vocab_size=256, num_kv_pairs=8)


def test_keys_unique_values_in_their_half_queries_refer_to_earlier_keys(examples):
    inputs, labels = examples.batch(np.arange(500))
    keys, values = inputs[:, 0:16:2], inputs[:, 1:16:2]
    assert all(len(set(row.tolist())) == 8 for row in keys)
    assert ((keys >= 1) & (keys < 128)).all() and ((values >= 128) & (values < 256)).all()
    for row in range(500):
        pairs = dict(zip(keys[row].tolist(), values[row].tolist()))
        positions = examples.query_positions[row]
        assert (positions >= 16).all() and (positions % 2 == 0).all() and len(set(positions.tolist())) == 8
        for position in positions:
            asked = int(inputs[row, position])
            assert asked in pairs  # a query repeats a key from the pairs before it
            assert int(labels[row, position]) == pairs[asked]  # and its target is that key's value
        assert sorted(pairs) == sorted(inputs[row, positions].tolist())  # every key is asked once


def test_labels_only_at_query_positions(examples):
    _, labels = examples.batch(np.arange(500))
    supervised = labels != IGNORE_INDEX
    expected = torch.zeros_like(supervised)
    expected.scatter_(1, torch.from_numpy(examples.query_positions), True)
    assert torch.equal(supervised, expected) and supervised.sum(1).eq(8).all()


def test_query_distances_follow_the_power_law():
    near = multiquery_ar(np.random.default_rng(1), 2000, 128, 512, 8, power_a=0.01)
    flat = multiquery_ar(np.random.default_rng(1), 2000, 128, 512, 8, power_a=1.0)
    # 56 free slots: the power law crowds queries into the first slots, a=1 spreads them evenly
    near_gap = ((near.query_positions - 16) // 2).mean()
    flat_gap = ((flat.query_positions - 16) // 2).mean()
    assert near_gap < 0.6 * flat_gap and abs(flat_gap - 27.5) < 1.5


def test_distinct_rows_are_uniform_even_when_dense():
    picks = distinct_per_row(np.random.default_rng(2), 20000, 4, 8)  # half of all ids in every row
    assert all(len(set(row)) == 4 for row in picks.tolist())
    counts = np.stack([np.bincount(picks[:, j], minlength=8) for j in range(4)])
    assert np.allclose(counts / 20000, 1 / 8, atol=0.015)


def test_the_papers_constraints_are_checked_one_line_each():
    cfg = ablate.compose(["model=tiny", "data=mqar", "data.seq_len=63", "data.vocab_size=60",
                          "data.num_kv_pairs=20"])
    problems = check_data_config(cfg.data, cfg.tokenizer, 32)
    assert problems == [
        "data.seq_len=63 must be even (pairs and query slots take two positions each)",
        "data.vocab_size=60 must be > data.seq_len=63 (Zoology's constraint)",
        "data.num_kv_pairs=20 needs data.seq_len >= 80 (4 x pairs: the pairs, then a slot per query)",
        "data.seq_len=63 exceeds model.block_size=32; lower seq_len or raise block_size",
    ]


def test_model_vocab_is_the_tasks_and_examples_are_deterministic():
    cfg = ablate.compose(["model=tiny", "data=mqar", "data.vocab_size=512", "data.num_train_examples=100"])
    model_spec, _ = validate(cfg)
    assert model_spec.vocab_size == 512
    a, b = load_tokens(cfg.data, cfg.tokenizer, 64), load_tokens(cfg.data, cfg.tokenizer, 64)
    assert np.array_equal(a.train, b.train) and not np.array_equal(a.train[:64 * 100], a.val[:64 * 100])


def test_tiny_run_reports_recall_accuracy(tmp_path):
    overrides = ["model=tiny", "train=smoke", "logger=none", "device=cpu", "data=mqar", "data.vocab_size=256",
                 "data.num_kv_pairs=4", "data.num_train_examples=2000", "data.num_val_examples=64"]
    summary = ablate.train(ablate.compose([*overrides, f"out_dir={tmp_path}"]), overrides)
    assert summary["status"] == "completed"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val/loss" in r]
    assert all(0.0 <= r["val/recall_acc"] <= 1.0 and r["val/recall_acc"] == r["val/acc"] for r in evals)
    assert summary["final/val_recall_acc"] == evals[-1]["val/recall_acc"]
