"""Inference accounting: the KV-cache bytes a run records are its attention's formula at block_size, speeds are
measured with the cache, the knobs change no config hash, and compare shows the columns and the cost-vs-quality
plot."""

from __future__ import annotations

import csv

import pytest
import torch

import ablate
from ablate.compare.build import build_report
from ablate.config import validate
from ablate.model import TransformerLM
from ablate.spec import InferenceSpec, SpecError
from ablate.track import config_hash
from ablate.training.inference import inference_costs
from tests.compare.fake_runs import write_run


def _model(attention: str) -> TransformerLM:
    spec, _ = validate(ablate.compose(["model=tiny", f"attention={attention}"]))
    return TransformerLM(spec).eval()


@pytest.mark.parametrize("attention, per_token_per_layer", [("mha", 2 * 64), ("gqa", 2 * 2 * 16), ("mqa", 2 * 16),
                                                              ("mla", 16 + 8)])
def test_kv_cache_bytes_are_the_attentions_formula_at_block_size_in_float32(attention, per_token_per_layer):
    costs = inference_costs(_model(attention), "cpu", InferenceSpec(decode_tokens=0))
    assert costs == {"inference/kv_cache_bytes": 2 * 64 * per_token_per_layer * 4}  # 2 layers, 64 tokens, fp32


def test_decode_speeds_are_measured_at_batch_one_and_the_given_batch():
    costs = inference_costs(_model("gqa"), "cpu", InferenceSpec(decode_tokens=3, batch=4))
    assert costs["inference/decode_batch"] == 4
    for key in ("inference/prefill_tokens_per_s", "inference/decode_tokens_per_s",
                "inference/decode_tokens_per_s_batched"):
        assert costs[key] > 0


def test_inference_knobs_are_recording_only_and_validated():
    base = ablate.compose(["model=tiny"])
    assert config_hash(ablate.compose(["model=tiny", "train.inference.decode_tokens=0"])) == config_hash(base)
    with pytest.raises(SpecError, match="train.inference needs decode_tokens >= 0"):
        validate(ablate.compose(["model=tiny", "train.inference.batch=0"]))


def test_compare_shows_kv_cache_and_decode_speed_and_draws_cost_vs_quality(tmp_path):
    for attention, kv, final in (("mha", 65536, 3.0), ("mqa", 16384, 3.1)):
        for seed in (0, 1):
            write_run(tmp_path / "sweep" / f"{attention}-{seed}", final + 0.01 * seed, seed=seed, attention=attention,
                      summary_extra={"inference/kv_cache_bytes": kv, "inference/decode_tokens_per_s": 100.0 + seed,
                                     "inference/decode_tokens_per_s_batched": 400.0,
                                     "inference/prefill_tokens_per_s": 900.0})
    report = build_report([str(tmp_path / "sweep")], tmp_path / "out", html=False)
    rows = {r["variant"]: r for r in csv.DictReader((tmp_path / "out" / "summary.csv").open())}
    assert float(rows["mqa"]["kv_cache_bytes"]) == 16384 and float(rows["mqa"]["decode_tokens_per_s"]) == 100.5
    assert float(rows["mha"]["decode_tokens_per_s_batched"]) == 400 and float(rows["mha"]["prefill_tokens_per_s"]) == 900
    assert "| 16.00 KiB · 100/s |" in (tmp_path / "out" / "summary.md").read_text()
    assert (tmp_path / "out" / "attention_cost.png") in report.files
