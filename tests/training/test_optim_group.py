"""optim=muon beyond one step (tests/training/test_muon.py): which parameters each part takes, by name; several
steps of momentum against a float64 reference written from the documented algorithm; every built-in option
trains under Muon; and the configs that would be silently wrong or fail mid-run are refused in one line."""

from __future__ import annotations

import math

import pytest
import torch

import ablate
from ablate.components import option_names
from ablate.config import train_spec, validate
from ablate.spec import COMPONENT_FAMILIES, OPTIMIZERS, SpecError
from ablate.training.optim import lr_at, make_optimizer, set_lr
from tests.fixtures.variants import FIXTURE_OVERRIDES

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's documented defaults (Jordan's quintic)


def build(*overrides: str):
    """(model, its optimizer as the trainer builds it, the train spec) for model=tiny."""
    cfg = ablate.compose(["model=tiny", *overrides])
    model = ablate.build_model(cfg)
    spec = train_spec(cfg)
    return model, make_optimizer(model, spec, "cpu"), spec


def split(model, optimizer) -> dict[str, set[str]]:
    """Parameter names by where they train: muon, adamw_decay (weight decay on), adamw (no decay)."""
    names = {id(p): name for name, p in model.named_parameters()}
    found: dict[str, set[str]] = {"muon": set(), "adamw_decay": set(), "adamw": set()}
    for part, optimizer_part in optimizer.parts.items():
        for group in optimizer_part.param_groups:
            where = "muon" if part == "muon" else "adamw_decay" if group["weight_decay"] > 0 else "adamw"
            found[where] |= {names[id(p)] for p in group["params"]}
    return found


def layer_names(layers: int, *suffixes: str) -> set[str]:
    return {f"blocks.{i}.{s}" for i in range(layers) for s in suffixes}


def test_muon_takes_the_blocks_matrices_adamw_the_embeddings_tied_head_and_norms():
    model, optimizer, spec = build("optim=muon")
    assert model.head.weight is model.token_embedding.weight  # tied: one parameter, named token_embedding.weight
    layers = model.spec.n_layers
    assert split(model, optimizer) == {
        "muon": layer_names(layers, "attn.q_proj.weight", "attn.kv_proj.weight", "attn.out_proj.weight",
                            "ffn.up.weight", "ffn.down.weight"),
        "adamw_decay": set(),  # the tied head is the embedding table: never decayed
        "adamw": {"token_embedding.weight", "pos_enc.table.weight", "final_norm.weight"}
        | layer_names(layers, "norm1.weight", "norm2.weight"),  # (model.bias=false: no biases anywhere)
    }
    assert [g["weight_decay"] for g in optimizer.parts["muon"].param_groups] == [spec.weight_decay]


def test_an_untied_head_biases_and_per_layer_relative_tables_go_to_adamw():
    model, optimizer, _ = build("optim=muon", "model.tie_embeddings=false", "model.bias=true", "ffn=swiglu",
                                "pos_enc=relative", "pos_enc.shared=false")
    found = split(model, optimizer)
    assert found["muon"] == layer_names(model.spec.n_layers, "attn.q_proj.weight", "attn.kv_proj.weight",
                                        "attn.out_proj.weight", "ffn.up.weight", "ffn.gate.weight", "ffn.down.weight")
    assert found["adamw_decay"] == {"head.weight"}  # decayed, as under optim=adamw
    assert {"token_embedding.weight", "pos_enc.tables.0.weight", "pos_enc.tables.1.weight",
            "blocks.0.attn.q_proj.bias", "blocks.1.ffn.down.bias", "final_norm.bias"} <= found["adamw"]
    assert sum(map(len, found.values())) == sum(1 for _ in model.parameters())


def test_stacked_3d_weights_of_a_user_component_stay_on_adamw_and_decay():
    model, optimizer, _ = build("optim=muon", *FIXTURE_OVERRIDES, "ffn=raw_weights")
    found = split(model, optimizer)
    assert model.blocks[0].ffn.w_out.dim() == 3 and "blocks.0.ffn.w_in" in found["muon"]
    assert found["adamw_decay"] == layer_names(model.spec.n_layers, "ffn.w_out")


# Every built-in component option once (defaults elsewhere): torch's Muon refuses any parameter that is not 2-D,
# so each must build, and one step must move every parameter that has a gradient.
OPTIONS = [f"{family}={name}" for family in COMPONENT_FAMILIES for name in option_names(family)]


@pytest.mark.parametrize("option", OPTIONS)
def test_muon_builds_and_steps_for_every_built_in_option(option):
    overrides = [option, "model.n_layers=1"] + (["pos_enc=rope"] if option == "attention=mla" else [])
    try:
        model, optimizer, _ = build("optim=muon", *overrides)
    except SpecError as e:  # an option that does not fit the defaults says so
        pytest.skip(e.problems[0])
    before = [p.detach().clone() for p in model.parameters()]
    ids = torch.randint(0, 256, (2, 16))
    torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
    optimizer.step()
    moved = [not torch.equal(a, p) for a, p in zip(before, model.parameters()) if p.grad is not None]
    assert moved and all(moved)


def newton_schulz(m: torch.Tensor, steps: int) -> torch.Tensor:
    """The documented iteration in float64: X ← X / ‖X‖_F, then X ← aX + (bXXᵀ + c(XXᵀ)²)X on the wide
    orientation (a tall matrix is transposed, iterated, transposed back)."""
    a, b, c = NS_COEFFICIENTS
    tall = m.shape[0] > m.shape[1]
    x = m.T if tall else m
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def reference_muon(w0, grads, lrs, weight_decay, momentum, nesterov, ns_steps, adjust):
    """Muon as torch documents it: B ← μB + g; update g + μB (nesterov) or B; O = NS(update); θ ← θ(1 − γλ) − γ'O
    with γ' = γ·sqrt(max(1, A/B)) (original) or γ·0.2·sqrt(max(A, B)) (match_rms_adamw) for an A×B matrix."""
    w, buf = w0.double().clone(), torch.zeros_like(w0, dtype=torch.float64)
    rows, cols = w.shape
    scale = math.sqrt(max(1.0, rows / cols)) if adjust == "original" else 0.2 * math.sqrt(max(rows, cols))
    for g, lr in zip(grads, lrs):
        g = g.double()
        buf = momentum * buf + g
        update = g + momentum * buf if nesterov else buf
        w = w * (1 - lr * weight_decay) - lr * scale * newton_schulz(update, ns_steps)
    return w


@pytest.mark.parametrize("knobs", [[], ["optim.nesterov=false", "optim.momentum=0.9"],
                                   ["optim.adjust_lr=original", "optim.lr=0.02", "optim.ns_steps=3"]])
def test_muon_steps_match_the_documented_update_in_float64(knobs):
    model, optimizer, spec = build("optim=muon", "train.weight_decay=0.1", *knobs)
    o = spec.optim
    peak = spec.lr if o.lr is None else o.lr
    matrices = {"tall": model.blocks[0].ffn.up.weight, "wide": model.blocks[1].ffn.down.weight,
                "square": model.blocks[0].attn.q_proj.weight}
    start = {k: w.detach().clone() for k, w in matrices.items()}
    torch.manual_seed(1)
    steps, total = 4, 10
    grads = {k: [torch.randn_like(w) for _ in range(steps)] for k, w in matrices.items()}
    lrs = []
    for step in range(steps):  # the trainer's schedule (in warmup here), Muon's part at its own peak
        set_lr(optimizer, lr_at(step, total, spec))
        lrs.append(lr_at(step, total, spec) * peak / spec.lr)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        for k, w in matrices.items():
            w.grad = grads[k][step].clone()
        optimizer.step()
    for k, w in matrices.items():
        expected = reference_muon(start[k], grads[k], lrs, spec.weight_decay, o.momentum, o.nesterov, o.ns_steps,
                                  o.adjust_lr) - start[k].double()
        other_nesterov = reference_muon(start[k], grads[k], lrs, spec.weight_decay, o.momentum, not o.nesterov,
                                        o.ns_steps, o.adjust_lr) - start[k].double()
        error = (w.detach().double() - start[k].double() - expected).norm() / expected.norm()
        # torch iterates in bfloat16 (about 1% off float64); the other nesterov setting alone is about 20% off
        assert error < 0.03, (k, float(error))
        assert (other_nesterov - expected).norm() / expected.norm() > 0.1


def test_every_optim_yaml_names_an_optimizer_ablate_builds():
    assert option_names("optim") == sorted(OPTIMIZERS)


def test_an_optim_yaml_of_another_name_is_refused_not_trained_as_adamw(tmp_path):
    """A user's conf/optim/lion.yaml is found by +study=optim; without code behind its name it would train AdamW
    and be recorded as lion."""
    (tmp_path / "optim").mkdir()
    (tmp_path / "optim" / "lion.yaml").write_text("name: lion\n")
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["model=tiny", "optim=lion", f"hydra.searchpath=[file://{tmp_path}]"]))
    assert error.value.problems == ["optim=lion is no optimizer ablate can build: an optim YAML's name must be one "
                                    "of adamw, muon (their code is ablate.training.optim.make_optimizer)"]


BAD = [
    # torch.optim.Muon accepts it when built and raises at its first step, after the run dir exists
    (["optim=muon", "optim.ns_steps=100"], "optim.ns_steps=100 must be >= 1 and <= 99"),
    # AdamW would ignore it
    (["+optim.lr=0.02"], "optim.lr is a knob of optim=muon, not of optim=adamw (AdamW takes train.lr"),
    (["optim=muon", "optim.nesterov=sometimes"], "optim.nesterov"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_optim_knobs_are_one_clear_line(overrides, message):
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["model=tiny", *overrides]))
    assert len(error.value.problems) == 1, error.value.problems
    assert message in error.value.problems[0]
