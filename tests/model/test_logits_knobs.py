"""model.logit_softcap (Gemma 2) and model.z_loss (PaLM) against their equations; off, the model is today's."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import ablate
from ablate.compare.keys import identity
from ablate.compare.load import Run
from ablate.config import model_spec, validate
from ablate.model.transformer import TransformerLM, soft_cap, z_loss
from ablate.spec import SpecError
from ablate.track.files import config_hash
from ablate.training.sample import generate
from ablate.training.step import compute_losses

from .helpers import DTYPE, TOL, make_spec


def _pair(**knobs):
    """A model with `knobs` and the same model (same weights) without them, float64, eval mode."""
    spec = make_spec(n_layers=2)
    torch.manual_seed(0)
    plain = TransformerLM(spec).to(DTYPE).eval()
    knobbed = TransformerLM(dataclasses.replace(spec, **knobs)).to(DTYPE).eval()
    knobbed.load_state_dict(plain.state_dict())
    return plain, knobbed


def test_softcap_is_cap_tanh_of_the_logits_in_train_and_eval():
    plain, capped = _pair(logit_softcap=0.5)
    torch.nn.init.normal_(plain.head.weight, std=2.0)
    capped.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 50, (2, 16))
    raw = plain(ids)
    assert raw.abs().max() > 1.0  # beyond the cap: the test can tell capped from uncapped
    expected = torch.tensor([[[0.5 * math.tanh(v / 0.5) for v in row] for row in seq] for seq in raw.tolist()],
                            dtype=DTYPE)
    torch.testing.assert_close(capped(ids), expected, **TOL)
    assert capped(ids).abs().max() <= 0.5
    capped.train()  # dropout is 0: training sees the same capped logits
    torch.testing.assert_close(capped(ids), expected, **TOL)


def test_sampling_draws_from_the_capped_softmax():
    plain, capped = _pair(logit_softcap=0.5)
    torch.nn.init.normal_(plain.head.weight, std=2.0)
    capped.load_state_dict(plain.state_dict())
    prompt = [1, 2, 3]
    # the same seed and uniform draws: the capped model's sample is the one from its own (flatter) distribution
    drawn = generate(capped, prompt, 5, temperature=1.0, top_p=1.0, seed=3)
    ids = torch.tensor([prompt])
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        logits = soft_cap(plain(ids)[0, -1], 0.5)
        ids = torch.cat([ids, torch.multinomial(logits.softmax(-1), 1, generator=generator).view(1, 1)], 1)
    assert drawn == ids[0].tolist()


def test_z_loss_is_coef_times_mean_log_squared_normaliser():
    logits = torch.randn(2, 3, 7, dtype=DTYPE) * 3
    by_hand = [math.log(sum(math.exp(v) for v in row)) ** 2 for seq in logits.tolist() for row in seq]
    torch.testing.assert_close(z_loss(logits, 1e-4), torch.tensor(1e-4 * sum(by_hand) / 6, dtype=DTYPE), **TOL)


def test_z_loss_joins_the_minimized_loss_and_is_logged_apart_from_cross_entropy():
    plain, with_z = _pair(z_loss=0.5)
    ids = torch.randint(0, 50, (2, 16))
    x, y = ids[:, :-1], ids[:, 1:]
    base, losses = compute_losses(plain, plain, x, y, "cpu"), compute_losses(with_z, with_z, x, y, "cpu")
    logits = plain(x)
    torch.testing.assert_close(losses.ce, F.cross_entropy(logits.float().flatten(0, 1), y.flatten()))
    torch.testing.assert_close(losses.aux["z_loss"], 0.5 * torch.logsumexp(logits, -1).pow(2).mean(), **TOL)
    torch.testing.assert_close(losses.total, losses.ce + losses.aux["z_loss"])
    values = losses.tensors()
    assert values["train/loss"].item() == pytest.approx(losses.ce.item()) and "train/aux/z_loss" in values
    assert base.aux == {} and set(base.tensors()) == {"train/loss"}
    losses.total.backward()  # the z-loss reaches the weights
    grad_with_z = with_z.head.weight.grad.clone()
    base.total.backward()
    assert not torch.allclose(grad_with_z, plain.head.weight.grad)


def test_knobs_off_are_todays_model_bit_for_bit():
    """Defaults (z_loss 0, no cap, no patterns) through the config give the spec and model of the unchanged path."""
    cfg = ablate.compose(["model=tiny"])
    spec = model_spec(cfg, vocab_size=50)
    assert (spec.z_loss, spec.logit_softcap, spec.attention_pattern, spec.pos_enc_pattern) == (0.0, None, (), ())
    torch.manual_seed(0)
    model = TransformerLM(spec).eval()
    torch.manual_seed(0)
    today = TransformerLM(make_spec(d_model=64, n_layers=2, block_size=64, pos_enc="learned",
                                    dropout=spec.dropout)).eval()
    ids = torch.randint(0, 50, (2, 64))
    assert model.state_dict().keys() == today.state_dict().keys()
    assert all(torch.equal(v, today.state_dict()[k]) for k, v in model.state_dict().items())
    assert torch.equal(model(ids), today(ids))
    with torch.no_grad():  # the forward as it was: embed, blocks with the one encoding, final norm, head
        x = model.drop(model.pos_enc.embed(model.token_embedding(ids)))
        for block in model.blocks:
            x = block(x, model.pos_enc)
        assert torch.equal(model(ids), model.head(model.final_norm(x)))
    assert model.logit_losses(model(ids)) == {}


@pytest.mark.parametrize("override, line", [
    ("model.z_loss=-1e-4", "model.z_loss=-0.0001 must be a finite number >= 0"),
    ("model.z_loss=inf", "model.z_loss=inf must be a finite number >= 0"),
    ("model.logit_softcap=0", "model.logit_softcap=0.0 must be a finite number > 0, or null"),
    ("model.logit_softcap=-30", "model.logit_softcap=-30.0 must be a finite number > 0, or null"),
])
def test_bad_values_are_refused_in_one_line(override, line):
    with pytest.raises(SpecError) as refused:
        validate(ablate.compose(["model=tiny", override]))
    assert len(refused.value.problems) == 1 and refused.value.problems[0].startswith(line)


def test_the_knobs_compose_from_the_command_line():
    spec, _ = validate(ablate.compose(["model=tiny", "model.z_loss=1e-4", "model.logit_softcap=30"]))
    assert spec.z_loss == 1e-4 and spec.logit_softcap == 30.0


def test_runs_recorded_before_the_knobs_keep_their_hash_and_identity():
    """A config without the new keys (a run recorded before them) and one with them at their defaults are the same
    computation: same hash, same compare identity; a knob turned on is another."""
    cfg = ablate.compose(["model=tiny"])
    before = OmegaConf.create(OmegaConf.to_container(cfg))
    for key in ("z_loss", "logit_softcap", "attention_pattern", "pos_enc_pattern"):
        del before.model[key]
    assert config_hash(cfg) == config_hash(before)
    on = ablate.compose(["model=tiny", "model.z_loss=1e-4"])
    assert config_hash(on) != config_hash(cfg)

    def ident(c):
        return identity(Run(dir=None, summary={}, config=OmegaConf.to_container(c), rows=[]))

    assert ident(cfg) == ident(before) and ident(on)["model.z_loss"] == "0.0001"
