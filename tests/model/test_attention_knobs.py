"""The softmax attentions' knobs `qk_norm` (Wortsman et al. 2023, per-head RMSNorm of queries and keys before RoPE)
and `gate` (Qiu et al. 2025, G1: Y ⊙ sigmoid(x W_g) on each head's output before the output projection), against
per-head float64 references written from those equations; causality, sensitivity, parameter and FLOP counts; linear
attention's refusal of qk_norm; and, with every knob off, the exact parameters, RNG draws and outputs that the code
before these knobs produced (data/attention_before_knobs.json, recorded from that code)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

import ablate
from ablate.config import validate
from ablate.model import count_parameters, flops_per_token
from ablate.spec import SpecError

from .helpers import DTYPE, SPARSE_AT_TINY, TOL, assert_causal, build_layer, make_spec, reference_rope
from .test_linear_attention import phi, recurrent
from .test_sparse_attention import band, bigbird_dense_mask, random_blocks_of

EPS = 1e-6  # the RMSNorm epsilon QKNorm documents


def rms_norm(x, gain):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * gain


def knobbed_reference(layer, pos, x, allowed, qk_norm, gate, first_values=None):
    """One head at a time: q_i = x W_q,i; k, v from head i's kv group; qk-norm, then RoPE; softmax over the allowed
    pairs; the gate sigmoid(x W_g,i) on head i's output; concat, W_o. first_values (B, H_kv, T, D): value residual,
    v' = ½·v + ½·V_1."""
    h, h_kv, d = layer.n_heads, layer.n_kv_heads, layer.head_dim
    w_k, w_v = layer.kv_proj.weight.chunk(2, dim=0)
    heads = []
    for i in range(h):
        g = i // (h // h_kv)
        q = x @ layer.q_proj.weight[i * d:(i + 1) * d].T
        k, v = x @ w_k[g * d:(g + 1) * d].T, x @ w_v[g * d:(g + 1) * d].T
        if first_values is not None:
            v = 0.5 * v + 0.5 * first_values[:, g]
        if qk_norm:
            q, k = rms_norm(q, layer.qk_norm.q.weight), rms_norm(k, layer.qk_norm.k.weight)
        if pos.acts_on == "rotary":
            q, k = reference_rope(q), reference_rope(k)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~allowed, float("-inf"))
        y = scores.softmax(-1) @ v
        if gate:
            y = y * torch.sigmoid(x @ layer.gate_proj.weight[i * d:(i + 1) * d].T)
        heads.append(y)
    return torch.cat(heads, dim=-1) @ layer.out_proj.weight.T


KNOBS = [(True, False), (False, True), (True, True)]
KNOB_IDS = ["qk_norm", "gate", "qk_norm+gate"]
DENSE = [("mha", {}), ("mqa", {}), ("gqa", {"n_kv_heads": 2})]


@pytest.mark.parametrize("pos_enc", ["none", "rope"])
@pytest.mark.parametrize("qk_norm,gate", KNOBS, ids=KNOB_IDS)
@pytest.mark.parametrize("attention,knobs", DENSE, ids=[a for a, _ in DENSE])
def test_dense_attention_with_knobs_equals_reference(attention, knobs, qk_norm, gate, pos_enc):
    spec = make_spec(attention, pos_enc, attention_knobs={**knobs, "qk_norm": qk_norm, "gate": gate})
    layer, pos = build_layer(spec)
    x = torch.randn(2, 20, spec.d_model, dtype=DTYPE)
    y = layer(x, pos)
    assert y.shape == x.shape
    allowed = torch.ones(20, 20, dtype=torch.bool).tril()
    torch.testing.assert_close(y, knobbed_reference(layer, pos, x, allowed, qk_norm, gate), **TOL)


@pytest.mark.parametrize("qk_norm,gate", KNOBS, ids=KNOB_IDS)
def test_local_with_knobs_equals_reference(qk_norm, gate):
    spec = make_spec("local", "rope", attention_knobs={"window": 5, "qk_norm": qk_norm, "gate": gate}, block_size=128)
    layer, pos = build_layer(spec)
    x = torch.randn(2, 100, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), knobbed_reference(layer, pos, x, band(100, 5), qk_norm, gate), **TOL)


@pytest.mark.parametrize("qk_norm,gate", KNOBS, ids=KNOB_IDS)
def test_bigbird_with_knobs_equals_reference(qk_norm, gate):
    knobs = dict(block_size=4, num_global_blocks=1, num_window_blocks=2, num_random_blocks=2, qk_norm=qk_norm,
                 gate=gate)
    spec = make_spec("bigbird", "rope", attention_knobs=knobs, block_size=64)
    layer, pos = build_layer(spec)
    mask = bigbird_dense_mask(64, 4, 1, 2, random_blocks_of(layer, 1, 2))
    x = torch.randn(2, 64, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), knobbed_reference(layer, pos, x, mask, qk_norm, gate), **TOL)


def mla_reference(layer, pos, x, qk_norm, gate, first_values=None):
    """DeepSeek-V2 MLA without a query latent, one head at a time: q_i = [x W_UQ,i ; x W_QR,i],
    k_i = [c W_UK,i ; x W_KR] with c = RMSNorm(x W_DKV); qk-norm over each whole head, then RoPE on the rope parts."""
    t = x.shape[1]
    n_h, d_c, nope, rope, d_v = layer.n_heads, layer.kv_lora_rank, layer.nope, layer.rope, layer.v_dim
    w_q = layer.q_proj.weight.view(n_h, nope + rope, -1)
    c = rms_norm(x @ layer.kv_down.weight[:d_c].T, layer.kv_norm.weight)
    k_r = x @ layer.kv_down.weight[d_c:].T
    w_kv = layer.kv_up.weight.view(n_h, nope + d_v, d_c)
    rotate = reference_rope if pos.acts_on == "rotary" else (lambda z: z)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    heads = []
    for i in range(n_h):
        q, k = x @ w_q[i].T, torch.cat([c @ w_kv[i, :nope].T, k_r], dim=-1)
        if qk_norm:
            q, k = rms_norm(q, layer.qk_norm.q.weight), rms_norm(k, layer.qk_norm.k.weight)
        q = torch.cat([q[..., :nope], rotate(q[..., nope:])], dim=-1)
        k = torch.cat([k[..., :nope], rotate(k[..., nope:])], dim=-1)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(nope + rope)).masked_fill(~causal, float("-inf"))
        v = c @ w_kv[i, nope:].T
        if first_values is not None:
            v = 0.5 * v + 0.5 * first_values[:, i]
        y = scores.softmax(-1) @ v
        if gate:
            y = y * torch.sigmoid(x @ layer.gate_proj.weight[i * d_v:(i + 1) * d_v].T)
        heads.append(y)
    return torch.cat(heads, dim=-1) @ layer.out_proj.weight.T


@pytest.mark.parametrize("pos_enc", ["none", "rope"])
@pytest.mark.parametrize("qk_norm,gate", KNOBS, ids=KNOB_IDS)
def test_mla_with_knobs_equals_reference(qk_norm, gate, pos_enc):
    knobs = dict(qk_nope_head_dim=6, qk_rope_head_dim=4, v_head_dim=10, qk_norm=qk_norm, gate=gate)
    spec = make_spec("mla", pos_enc, attention_knobs=knobs)
    layer, pos = build_layer(spec)
    x = torch.randn(2, 20, spec.d_model, dtype=DTYPE)
    torch.testing.assert_close(layer(x, pos), mla_reference(layer, pos, x, qk_norm, gate), **TOL)


def test_linear_attention_takes_the_gate():
    spec = make_spec("linear", "rope", attention_knobs={"chunk_size": 8, "gate": True})
    layer, pos = build_layer(spec)
    x = torch.randn(2, 30, spec.d_model, dtype=DTYPE)

    def split(z):  # (B, T, H·D) -> (B, H, T, D)
        return z.view(*x.shape[:2], spec.n_heads, -1).transpose(1, 2)

    w_k, w_v = layer.kv_proj.weight.chunk(2, dim=0)
    fq, fk = phi(split(x @ layer.q_proj.weight.T)), phi(split(x @ w_k.T))
    y = recurrent(fq, fk, split(x @ w_v.T), reference_rope(fq), reference_rope(fk)).transpose(1, 2).flatten(2)
    expected = (y * torch.sigmoid(x @ layer.gate_proj.weight.T)) @ layer.out_proj.weight.T
    torch.testing.assert_close(layer(x, pos), expected, **TOL)


def test_linear_attention_refuses_qk_norm_in_one_line():
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["model=tiny", "attention=linear", "attention.qk_norm=true"]))
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith("attention.qk_norm=true cannot be used with attention=linear: ")
    assert "softmax" in error.value.problems[0]


SOFTMAX = ["mha", "mqa", "gqa", "local", "bigbird", "mla"]
KNOB_OVERRIDES = ["attention.qk_norm=true", "attention.gate=true"]


@pytest.mark.parametrize("override", KNOB_OVERRIDES)
@pytest.mark.parametrize("attention", SOFTMAX)
def test_knob_is_causal(attention, override):
    assert_causal(["pos_enc=rope", f"attention={attention}", override, *SPARSE_AT_TINY.get(attention, [])])


@pytest.mark.parametrize("knob", ["qk_norm", "gate"])
@pytest.mark.parametrize("attention", SOFTMAX)
def test_knob_changes_the_output_of_the_same_weights(attention, knob):
    plain, pos = build_layer(make_spec(attention, "rope"))
    knobbed, _ = build_layer(make_spec(attention, "rope", attention_knobs={knob: True}))
    missing, unexpected = knobbed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.split(".")[0] in ("qk_norm", "gate_proj") for name in missing)
    x = torch.randn(1, 16, 32, dtype=DTYPE)
    assert (knobbed(x, pos) - plain(x, pos)).abs().max() > 1e-3


def _model(*overrides):
    return ablate.build_model(ablate.compose(["model=tiny", *overrides]))


@pytest.mark.parametrize("attention,qk_dim,v_width", [("mha", 16, 64), ("gqa", 16, 64), ("mla", 24, 64)])
def test_parameter_and_flop_counts(attention, qk_dim, v_width):
    """qk_norm: 2 gains of qk_head_dim per layer; gate: W_g of d_model × n_heads·v_head_dim per layer, counted in
    FLOPs as 6 per parameter like every other matmul (model=tiny: d 64, 2 layers, 4 heads of 16; MLA's qk head is
    nope 16 + rope 8)."""
    base = _model(f"attention={attention}")
    n0, f0 = count_parameters(base)["total"], flops_per_token(base)
    with_norm = _model(f"attention={attention}", "attention.qk_norm=true")
    assert count_parameters(with_norm)["total"] - n0 == 2 * 2 * qk_dim
    with_gate = _model(f"attention={attention}", "attention.gate=true")
    assert count_parameters(with_gate)["total"] - n0 == 2 * 64 * v_width
    assert flops_per_token(with_gate) - f0 == 6 * 2 * 64 * v_width


BEFORE = json.loads((Path(__file__).parent / "data" / "attention_before_knobs.json").read_text())
OFF = ["attention.qk_norm=false", "attention.gate=false", "model.value_residual=false"]


@pytest.mark.parametrize("case", sorted(BEFORE))
def test_knobs_off_is_the_code_before_them_bit_for_bit(case):
    """Same parameter names and bytes from the same seed, the same RNG state after building, the same logits."""
    attention, pos_enc = case.split(",")
    overrides = [f"attention={attention}", f"pos_enc={pos_enc}", *SPARSE_AT_TINY.get(attention, [])]
    overrides += [o for o in OFF if attention != "linear" or "qk_norm" not in o]
    torch.manual_seed(0)
    model = _model("dropout=off", *overrides)
    digest = hashlib.sha256()
    for name, p in model.state_dict().items():
        digest.update(name.encode())
        digest.update(p.detach().contiguous().numpy().tobytes())
    assert digest.hexdigest()[:16] == BEFORE[case]["sha"]
    assert torch.randn(3).tolist() == BEFORE[case]["rng"]
    ids = torch.arange(64).remainder(7).mul(37).remainder(256)[None]
    with torch.no_grad():
        logits = model.double().eval()(ids)
    torch.testing.assert_close(logits[0, [0, 31, 63], :3], torch.tensor(BEFORE[case]["logits"], dtype=DTYPE),
                               atol=1e-12, rtol=0)


def test_knobs_off_keep_the_config_hash_of_runs_recorded_before_them():
    from omegaconf import open_dict

    from ablate.track.files import config_hash

    cfg = ablate.compose(["model=tiny"])
    before = cfg.copy()
    with open_dict(before):  # a config as recorded before the knobs existed
        del before.attention.qk_norm, before.attention.gate, before.model.value_residual
    assert config_hash(cfg) == config_hash(before)
    for knob in ("attention.qk_norm=true", "attention.gate=true", "model.value_residual=true"):
        assert config_hash(ablate.compose(["model=tiny", knob])) != config_hash(cfg)
