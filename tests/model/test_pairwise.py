"""Every allowed pair of options across the six groups builds from `ablate.compose`, runs forward/backward with
finite values and takes one optimizer step on model=tiny. Pairwise coverage: a greedy covering set of full
configurations (each test id lists its six choices, so the pairs it covers can be read off it)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import ablate
from ablate.components import option_names
from ablate.spec import FAMILIES

from .helpers import SPARSE_AT_TINY, option_class

GROUPS = FAMILIES
OPTIONS = {g: option_names(g) for g in GROUPS}


def allowed(config: dict) -> bool:
    """The only cross-group constraint: pos_enc × attention support (see Attention.supports)."""
    if "pos_enc" in config and "attention" in config:
        acts_on = option_class("pos_enc", config["pos_enc"]).acts_on
        return acts_on in option_class("attention", config["attention"]).supports
    return True


def required_pairs() -> set:
    pairs = set()
    for g1, g2 in itertools.combinations(GROUPS, 2):
        for o1, o2 in itertools.product(OPTIONS[g1], OPTIONS[g2]):
            if allowed({g1: o1, g2: o2}):
                pairs.add(((g1, o1), (g2, o2)))
    return pairs


def pairs_of(config: dict) -> set:
    return {((g1, config[g1]), (g2, config[g2])) for g1, g2 in itertools.combinations(GROUPS, 2)}


def covering_configs() -> list[dict]:
    """Greedy: start from each uncovered pair, fill the other groups with the options covering most new pairs."""
    uncovered, configs = required_pairs(), []
    while uncovered:
        ((g1, o1), (g2, o2)) = min(uncovered)
        config = {g1: o1, g2: o2}
        for group in GROUPS:
            if group in config:
                continue
            candidates = [o for o in OPTIONS[group] if allowed(config | {group: o})]
            config[group] = max(
                candidates,
                key=lambda o: len({p for p in uncovered if set(p) <= set((config | {group: o}).items())}),
            )
        config = {g: config[g] for g in GROUPS}
        uncovered -= pairs_of(config)
        configs.append(config)
    return configs


CONFIGS = covering_configs()


def test_configs_cover_every_allowed_pair():
    covered = set().union(*(pairs_of(c) for c in CONFIGS))
    assert required_pairs() <= covered
    assert all(allowed(c) for c in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=[",".join(f"{g}={o}" for g, o in c.items()) for c in CONFIGS])
def test_builds_trains_one_step(config):
    overrides = [f"{g}={o}" for g, o in config.items()] + SPARSE_AT_TINY.get(config["attention"], [])
    model = ablate.build_model(ablate.compose(["model=tiny", *overrides])).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 256, (2, 64))
    logits = model(ids)
    assert logits.shape == (2, 64, 256) and torch.isfinite(logits).all()
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, 256), ids[:, 1:].reshape(-1))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
