"""The dropout group's separate probabilities: dropout.attention (attention weights) and dropout.residual
(embeddings and sublayer outputs), each dropout.p when null — so dropout=on trains and hashes as before."""

from __future__ import annotations

import pytest
import torch
from omegaconf import open_dict

import ablate
from ablate.components import Attention
from ablate.config import validate
from ablate.model import TransformerLM
from ablate.spec import SpecError
from ablate.track.files import config_hash


def _model(*overrides: str) -> TransformerLM:
    spec, _ = validate(ablate.compose(["model=tiny", *overrides]))
    return TransformerLM(spec)


def _probabilities(model: TransformerLM) -> tuple[set[float], set[float]]:
    attention = {m.dropout_p for m in model.modules() if isinstance(m, Attention)}
    residual = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    return attention, residual


@pytest.mark.parametrize("overrides, attention, residual", [
    ([], {0.1}, {0.1}),
    (["dropout=off"], {0.0}, {0.0}),
    (["dropout.attention=0"], {0.0}, {0.1}),
    (["dropout.residual=0.2", "dropout.attention=0.05"], {0.05}, {0.2}),
])
def test_each_probability_reaches_its_modules(overrides, attention, residual):
    assert _probabilities(_model(*overrides)) == (attention, residual)


def test_attention_dropout_zero_leaves_attention_deterministic_in_training():
    """Residual dropout off, attention dropout 0: two training-mode passes agree; with attention dropout on they
    do not (the attention weights are what drops)."""
    ids = torch.randint(0, 200, (2, 32))
    quiet = _model("dropout.residual=0", "dropout.attention=0").train()
    torch.testing.assert_close(quiet(ids), quiet(ids))
    noisy = _model("dropout.residual=0", "dropout.attention=0.5").train()
    assert not torch.allclose(noisy(ids), noisy(ids))


def test_the_split_keeps_the_config_hash_of_runs_recorded_before_it():
    cfg = ablate.compose(["model=tiny"])
    before = cfg.copy()
    with open_dict(before):  # a config as recorded before the split
        del before.dropout.attention, before.dropout.residual
    assert config_hash(cfg) == config_hash(before)
    assert config_hash(ablate.compose(["model=tiny", "dropout.attention=0"])) != config_hash(cfg)


def test_a_probability_out_of_range_is_named():
    with pytest.raises(SpecError, match=r"dropout.attention=1.0 must be in \[0, 1\) \(null: dropout.p\)"):
        validate(ablate.compose(["model=tiny", "dropout.attention=1.0"]))
