"""Export to Hugging Face: a Llama-compatible run loads with `AutoModelForCausalLM` as LlamaForCausalLM and gives the
run's logits (transformers is the independent reference here); anything else is refused in one line, writing
nothing; a BPE run's tokenizer comes along and encodes as the run did."""

from __future__ import annotations

import pytest
import torch

import ablate
from ablate.export import ExportError, export, main
from ablate.track.files import FILE_MODE
from ablate.weights import FINAL_WEIGHTS, load_model

transformers = pytest.importorskip("transformers", reason="the export extra (pip install -e '.[export]')")

LLAMA = ["pos_enc=rope", "norm=rmsnorm", "ffn=swiglu", "placement=pre", "train.max_steps=3", "train.eval_every=3"]


def trained_run(run_dir, overrides):
    ablate.train(ablate.compose([*overrides, f"out_dir={run_dir}"]), overrides)
    return run_dir


@pytest.mark.parametrize("choices", [["attention=gqa"], ["attention=mha", "model.tie_embeddings=false"],
                                     ["attention=mqa", "pos_enc.base=500"]])
def test_a_llama_run_exports_and_gives_its_logits(tmp_path, tiny_overrides, choices):
    run = trained_run(tmp_path / "run", [*tiny_overrides, *LLAMA, *choices])
    result = export(run, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    ours = load_model(run)
    ids = torch.randint(0, ours.spec.vocab_size, (3, ours.spec.block_size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        delta = (hf(ids).logits - ours(ids)).abs().max().item()
    assert delta < 1e-4 and result["max_abs_logit_diff"] < 1e-4
    assert hf.config.num_key_value_heads == ours.blocks[0].attn.n_kv_heads
    assert hf.config.tie_word_embeddings == ours.spec.tie_embeddings


def test_other_runs_are_refused_in_one_line_naming_the_choices(tmp_path, tiny_overrides, capsys):
    run = trained_run(tmp_path / "run", [*tiny_overrides, "pos_enc=learned", "ffn=relu", "attention=local",
                                         "norm=rmsnorm", "train.max_steps=2"])
    assert main([str(run), "--out", str(tmp_path / "hf")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "pos_enc=learned (Llama has rope)" in line and "ffn=relu (Llama has swiglu)" in line
    assert "attention=local (Llama has mha, gqa or mqa)" in line and "norm=" not in line.split("express")[1][:40]
    assert not (tmp_path / "hf").exists() and not list(tmp_path.glob(".hf*"))


def test_knobs_llama_lacks_are_refused(tmp_path, tiny_overrides):
    from ablate.config import validate
    from ablate.export import llama_problems

    spec, _ = validate(ablate.compose([*tiny_overrides, *LLAMA, "attention=gqa", "model.bias=true"]))
    assert llama_problems(spec) == ["model.bias=True (Llama has none)"]


def test_a_bpe_run_exports_its_tokenizer(tmp_path, tiny_overrides):
    bpe = ["tokenizer=bpe", "tokenizer.vocab_size=300", "tokenizer.sample_bytes=200000"]
    run = trained_run(tmp_path / "run", [*tiny_overrides, *LLAMA, "attention=gqa", *bpe])
    export(run, tmp_path / "hf")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    from ablate.data import load_tokens

    cfg = ablate.compose([*tiny_overrides, *LLAMA, "attention=gqa", *bpe])
    ours = load_tokens(cfg.data, cfg.tokenizer, cfg.model.block_size).tokenizer
    text = "def main():\n    return 42  # ünïcode"
    assert hf_tokenizer(text)["input_ids"] == ours.encode(text).tolist()


def test_load_model_reads_final_weights_else_the_checkpoint(tmp_path, tiny_overrides):
    run = trained_run(tmp_path / "run", [*tiny_overrides, "train.max_steps=2"])
    assert (run / FINAL_WEIGHTS).stat().st_mode & 0o777 == FILE_MODE  # the user's umask, like every run-dir file
    from_final = load_model(run)
    (run / FINAL_WEIGHTS).unlink()
    from_checkpoint = load_model(run)
    assert not from_final.training
    for (name, a), (_, b) in zip(from_final.state_dict().items(), from_checkpoint.state_dict().items()):
        assert torch.equal(a, b), name
