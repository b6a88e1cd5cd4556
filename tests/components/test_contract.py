"""The component contract, tested over every option found in conf/ — a new option is tested here without new
test code: its class is of its family, its YAML's knobs fit its signature, and its module does what the family
promises (shape; FFN and norm position-wise; attention causal-ready and sensitive to the past; counts declared)."""

from __future__ import annotations

import pytest
import torch

import ablate
from ablate.components import FAMILY_BASES, Attention, discover
from ablate.config import validate
from ablate.spec import COMPONENT_FAMILIES, SpecError

OPTIONS = [(family, name) for family in COMPONENT_FAMILIES for name in discover(family)]
IDS = [f"{family}={name}" for family, name in OPTIONS]


def _spec(overrides: list[str]):
    cfg = ablate.compose(["model=tiny", "dropout=off", *overrides])
    try:
        spec, _ = validate(cfg)
    except SpecError as e:  # an option may not fit a default of another family; it must say so
        assert all("cannot be used with" in line for line in e.problems), e.problems
        pytest.skip(f"not with the defaults: {e.problems[0]}")
    return spec


@pytest.mark.parametrize("family,name", OPTIONS, ids=IDS)
def test_option_is_a_class_of_its_family_with_knobs_from_its_signature(family, name):
    option = discover(family)[name]
    spec = _spec([f"{family}={name}"])
    cls = getattr(spec, family).cls
    assert issubclass(cls, FAMILY_BASES[family])
    assert set(option.knobs) <= set(cls.knob_parameters()), "the YAML's knobs are the class's keyword arguments"
    assert set(getattr(spec, family).knobs) == set(cls.knob_parameters()), "validation fills in every knob"


def _module(family: str, name: str):
    spec = _spec([f"{family}={name}"])
    args = (spec, 0) if family in ("attention", "placement") else (spec,)
    torch.manual_seed(0)
    module = getattr(spec, family).build(*args).double().eval()
    for p in module.parameters():  # not the zero/one inits: every weight must matter
        torch.nn.init.normal_(p, std=0.3)
    return spec, module


POSITION_WISE = [(f, n) for f, n in OPTIONS if f in ("ffn", "norm")]


@pytest.mark.parametrize("family,name", POSITION_WISE, ids=[f"{f}={n}" for f, n in POSITION_WISE])
def test_position_wise_options_keep_shape_and_touch_one_position(family, name):
    spec, module = _module(family, name)
    x = torch.randn(2, 9, spec.d_model, dtype=torch.float64)
    changed = x.clone()
    changed[:, 4] += 1.0
    y, y2 = module(x), module(changed)
    assert y.shape == x.shape
    others = [t for t in range(9) if t != 4]
    torch.testing.assert_close(y2[:, others], y[:, others], atol=1e-12, rtol=0)
    assert 0 <= module.active_parameters() <= sum(p.numel() for p in module.parameters())  # a MoE: fewer
    assert module.aux_loss() is None  # an auxiliary loss is a training loss


ATTENTION = [name for family, name in OPTIONS if family == "attention"]


@pytest.mark.parametrize("name", ATTENTION, ids=[f"attention={n}" for n in ATTENTION])
def test_attention_keeps_shape_sees_the_past_and_declares_its_costs(name):
    spec, layer = _module("attention", name)
    pos = spec.pos_enc.build(spec).double()
    x = torch.randn(1, spec.block_size, spec.d_model, dtype=torch.float64)
    changed = x.clone()
    changed[:, 0] += 1.0  # the first token: every later query may see it (a window or global block includes it)
    y, y2 = layer(x, pos), layer(changed, pos)
    assert y.shape == x.shape
    assert (y2[:, 1] - y[:, 1]).abs().max() > 1e-6, "the next position must depend on the one before it"
    assert isinstance(layer, Attention)
    assert 0 < layer.keys_per_query(spec.block_size) <= spec.block_size
    assert layer.context_flops(spec.block_size) > 0 and layer.kv_cache_per_token >= 0


@pytest.mark.parametrize(
    "target,message",
    [
        ("torch.nn.Linear", "ffn=relu: _target_ torch.nn.Linear is not a subclass of ablate.components.FeedForward"),
        ("ablate.model.norm.RMSNorm", "is not a subclass of ablate.components.FeedForward"),
        ("os.system", "is not a subclass of ablate.components.FeedForward"),
        ("no_such_module.Thing", "ffn=relu: _target_ no_such_module.Thing cannot be imported"),
    ],
)
def test_a_target_outside_the_family_is_one_line(target, message):
    with pytest.raises(SpecError) as error:
        validate(ablate.compose([f"ffn._target_={target}"]))
    assert len(error.value.problems) == 1 and message in error.value.problems[0], error.value.problems


def test_a_bad_target_is_one_line_even_where_another_option_asks_for_its_class():
    """rope's own check asks the attention's class; an unimportable attention must still be one line, not a crash."""
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["attention._target_=no_such_module.Thing", "pos_enc=rope"]))
    assert len(error.value.problems) == 1
    assert "attention=mha: _target_ no_such_module.Thing cannot be imported" in error.value.problems[0]


def test_a_missing_target_says_what_to_add():
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["~ffn._target_"]))
    assert error.value.problems == [
        "ffn=relu names no class: add `_target_: <module>.<Class>` (a subclass of ablate.components.FeedForward) "
        "to its YAML"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("attention.window=abc", "attention.window: Value 'abc' of type 'str' could not be converted to Integer"),
        ("attention.window=2.5", "attention.window: Value '2.5' of type 'float' could not be converted to Integer"),
        ("+attention.n_kv_heads=2", "attention.n_kv_heads is not a knob of attention=local; its knobs are: window"),
    ],
)
def test_knob_types_come_from_the_signature(override, message):
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["attention=local", override]))
    assert error.value.problems == [message] or message in error.value.problems[0], error.value.problems


@pytest.mark.parametrize(
    "override,message",
    [
        ("+model._target_=os.system", "model._target_ is not a key of model; its keys are: name, d_model"),
        ("+train.foo=1", "train.foo is not a key of train; its keys are: batch_size"),
        ("train.betas=[2,3]", "train.betas=[2.0, 3.0] must be two numbers in [0, 1)"),
        ("train.lr=nan", "train.lr=nan must be > 0 and finite"),
        ("train.batch_size=abc", "train.batch_size: Value 'abc' of type 'str' could not be converted to Integer"),
        ("+tokenizer.vocab_size=100", "tokenizer.vocab_size is not a knob of tokenizer=byte; its knobs are: none"),
    ],
)
def test_model_and_train_keys_are_checked_against_their_schema(override, message):
    with pytest.raises(SpecError) as error:
        validate(ablate.compose([override]))
    assert len(error.value.problems) == 1 and message in error.value.problems[0], error.value.problems
