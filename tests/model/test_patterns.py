"""model.attention_pattern / model.pos_enc_pattern: each layer is the layer a uniform model of its entry would have,
repeated over the depth; bad patterns are refused one line each; params and FLOPs sum over the layers built."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import ablate
from ablate.config import validate
from ablate.model import count_parameters, flops_per_token
from ablate.model.transformer import TransformerLM
from ablate.patterns import parse_entry
from ablate.spec import SpecError

from .helpers import DTYPE, TOL

TINY = ["model=tiny", "dropout=off"]


def _spec(*overrides):
    return validate(ablate.compose([*TINY, *overrides]))[0]


def _model(*overrides):
    torch.manual_seed(0)
    return TransformerLM(_spec(*overrides)).to(DTYPE).eval()


def test_entries_read_name_then_knob_value_pairs():
    assert parse_entry("mha") == ("mha", {})
    assert parse_entry("local:window:32") == ("local", {"window": 32})
    assert parse_entry("bigbird:block_size:8:num_random_blocks:1") == ("bigbird", {"block_size": 8,
                                                                                   "num_random_blocks": 1})


def test_the_pattern_repeats_over_the_depth_and_a_partial_period_ends_it():
    spec = _spec("model.n_layers=5", "model.attention_pattern=[local:window:8,gqa,mha]")
    model = TransformerLM(spec)
    assert [type(b.attn).__name__ for b in model.blocks] == ["LocalAttention", "GroupedQueryAttention",
                                                             "MultiHeadAttention", "LocalAttention",
                                                             "GroupedQueryAttention"]
    assert [getattr(b.attn, "window", None) for b in model.blocks] == [8, None, None, 8, None]
    assert [b.attn.layer for b in model.blocks] == [0, 1, 2, 3, 4]


def test_each_layer_equals_the_layer_of_a_uniform_model_of_its_entry():
    """Hand-assembled: embedding, then layer l taken from a model built with attention=<entry l> and
    pos_enc=<entry l> everywhere (its weights loaded from the pattern model), final norm, head."""
    pattern = _model("pos_enc=rope", "model.n_layers=3", "model.attention_pattern=[local:window:8,mha]",
                     "model.pos_enc_pattern=[rope,none,alibi]")
    uniform = [_model("pos_enc=rope", "model.n_layers=3", "attention=local", "attention.window=8"),
               _model("pos_enc=none", "model.n_layers=3", "attention=mha"),
               _model("pos_enc=alibi", "model.n_layers=3", "attention=local", "attention.window=8")]
    assert [type(p).__name__ for p in map(pattern.pos_enc_at, range(3))] == [
        "RotaryPositionalEncoding", "NoPositionalEncoding", "ALiBi"]
    ids = torch.randint(0, 256, (2, 64))
    with torch.no_grad():
        x = pattern.token_embedding(ids)
        for layer, model in enumerate(uniform):
            block = model.blocks[layer]
            block.load_state_dict(pattern.blocks[layer].state_dict())
            x = block(x, model.pos_enc)
        torch.testing.assert_close(pattern(ids), pattern.head(pattern.final_norm(x)), **TOL)


def test_an_entry_named_as_the_runs_choice_takes_its_configured_knobs():
    spec = _spec("attention=local", "attention.window=8", "model.attention_pattern=[local,mha,local:window:4]",
                 "model.n_layers=3")
    assert [spec.attention_at(layer).knobs.get("window") for layer in range(3)] == [8, None, 4]


def test_a_users_own_option_on_the_searchpath_is_a_pattern_entry(tmp_path):
    (tmp_path / "attention").mkdir()
    (tmp_path / "attention" / "one_kv.yaml").write_text(
        "name: one_kv\n_target_: ablate.model.attention.GroupedQueryAttention\nn_kv_heads: 1\n")
    spec = _spec(f"hydra.searchpath=[file://{tmp_path}]", "model.attention_pattern=[one_kv,mha]")
    assert spec.attention_at(0).name == "one_kv" and spec.attention_at(0).knobs["n_kv_heads"] == 1
    assert TransformerLM(spec).blocks[0].attn.n_kv_heads == 1


def test_parameters_and_flops_sum_over_the_layers_built():
    """local keeps MHA's projections (same parameters); FLOPs = 6·N + 3·Σ_layers 2·keys·H·(d_qk + d_v), keys = the
    window for local layers, T for dense ones (PaLM appendix B)."""
    pattern, dense = _model("model.attention_pattern=[local:window:16,mha]"), _model()
    assert count_parameters(pattern) == count_parameters(dense)
    n = count_parameters(pattern)["non_embedding"] + 256 * 64
    assert flops_per_token(pattern) == 6 * n + 3 * (2 * 16 * 4 * (16 + 16) + 2 * 64 * 4 * (16 + 16))
    gqa = _model("model.attention_pattern=[gqa:n_kv_heads:1,mha]")
    assert count_parameters(gqa)["total"] == count_parameters(dense)["total"] - 2 * 64 * 48  # k, v: 4 heads -> 1


def test_a_pos_enc_pattern_with_relative_bias_counts_its_table_once():
    model = _model("pos_enc=none", "model.pos_enc_pattern=[relative,none]")
    assert count_parameters(model)["total"] == count_parameters(_model("pos_enc=none"))["total"] + 32 * 4


def test_patterns_off_build_todays_model():
    torch.manual_seed(0)
    spec = _spec()
    today = TransformerLM(dataclasses.replace(spec))
    torch.manual_seed(0)
    empty = TransformerLM(_spec("model.attention_pattern=[]", "model.pos_enc_pattern=[]"))
    assert all(torch.equal(v, empty.state_dict()[k]) for k, v in today.state_dict().items())
    assert all(b.attn.__class__.__name__ == "MultiHeadAttention" for b in empty.blocks)


@pytest.mark.parametrize("overrides, line", [
    (["model.attention_pattern=[mha,flash]"],
     "model.attention_pattern: attention=flash is not an option; choose one of"),
    (["model.attention_pattern=[local:window]"], "model.attention_pattern: `local:window` is not `name` or"),
    (["model.attention_pattern=[local:span:8]"],
     "model.attention_pattern: attention.span is not a knob of attention=local; its knobs are: window"),
    (["model.attention_pattern=[local:window:abc]"], "model.attention_pattern: attention.window: Value 'abc'"),
    (["model.attention_pattern=[mha,mha,local]"],
     "model.attention_pattern has 3 entries but model.n_layers=2: entry 3 would never be used"),
    (["pos_enc=rope", "model.pos_enc_pattern=[rope,learned]"],
     "model.pos_enc_pattern: learned acts on the input embedding, once for all layers"),
    (["model.pos_enc_pattern=[rope,none]"],
     "model.pos_enc_pattern sets every layer's encoding, but pos_enc=learned acts on the input embedding too"),
    (["pos_enc=rope", "model.pos_enc_pattern=[rope,relative]", "model.attention_pattern=[mha,linear]"],
     "model pattern, layer 1 (pos_enc=relative, attention=linear): an additive score bias needs"),
    (["pos_enc=none", "model.pos_enc_pattern=[relative:shared:false,none]"],
     "model pattern, layer 0 (pos_enc=relative, attention=mha): pos_enc=relative with shared=false cannot be"),
    (["model.attention_pattern=[local:window:0,mha]"],
     "model pattern, layer 0 (pos_enc=learned, attention=local): attention.window=0 must be an integer >= 1"),
    (["pos_enc=none", "model.n_heads=64", "model.pos_enc_pattern=[none,rope]"],
     "model pattern, layer 1 (pos_enc=rope, attention=mha): pos_enc=rope needs an even head dim"),
])
def test_bad_patterns_are_refused_one_line_each(overrides, line):
    with pytest.raises(SpecError) as refused:
        validate(ablate.compose([*TINY, *overrides]))
    assert [p for p in refused.value.problems if p.startswith(line)], refused.value.problems
    assert len(refused.value.problems) == 1, refused.value.problems


def test_the_run_records_say_the_pattern(tmp_path):
    from ablate.naming import run_name
    from ablate.training.summary import RunSummary

    overrides = ["model.attention_pattern=[local:window:16,mha]"]
    cfg = ablate.compose([*TINY, *overrides])
    summary = RunSummary.start(cfg, overrides, "hash", tmp_path).to_dict()
    assert summary["attention_pattern"] == ["local:window:16", "mha"] and "pos_enc_pattern" not in summary
    assert "attention_pattern" not in RunSummary.start(ablate.compose(TINY), [], "hash", tmp_path).to_dict()
    assert run_name(overrides) == "model.attention_pattern=[local:window:16,mha]"


def test_compare_splits_runs_that_differ_only_in_the_pattern(tmp_path):
    """An ad-hoc sweep over patterns (no study info): one variant per pattern, the default one labelled as off;
    a run recorded before the pattern keys existed groups with the pattern-off runs."""
    import yaml

    from ablate.compare.group import group_runs
    from ablate.compare.load import load_runs
    from tests.compare.fake_runs import write_run

    patterns = {"off": None, "local": ["local:window:16", "mha"], "old": "absent"}
    for name, pattern in patterns.items():
        for seed in ((2, 3) if name == "old" else (0, 1)):
            run_dir = write_run(tmp_path / f"{name}-{seed}", 4.0 + 0.1 * (name == "local") + 0.001 * seed, seed=seed)
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            if pattern != "absent":
                config["model"].update(z_loss=0.0, logit_softcap=None, attention_pattern=pattern,
                                       pos_enc_pattern=None)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    section, = group_runs(load_runs([str(tmp_path)]))
    assert section.factors == ["model.attention_pattern"]
    assert {k: len(v) for k, v in section.variants.items()} == {"model.attention_pattern=None": 4,
                                                                "model.attention_pattern=['local:window:16', 'mha']": 2}
