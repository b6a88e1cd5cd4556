"""Batching: random or sequential windows, deterministic from data.seed, resumable; val windows fixed."""

from __future__ import annotations

import numpy as np
import torch

from ablate.data import TokenData
from ablate.data.batches import RandomWindows, SequentialWindows, fixed_eval_batches

TOKENS = np.arange(1000, dtype=np.uint16)


def _take(sampler, n):
    return [sampler.next() for _ in range(n)]


def test_windows_are_inputs_and_next_token_targets():
    x, y = RandomWindows(TOKENS, 4, 16, seed=0).next()
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones_like(x))


def test_random_windows_follow_the_seed_and_resume_from_state():
    a, b, c = RandomWindows(TOKENS, 4, 16, 0), RandomWindows(TOKENS, 4, 16, 0), RandomWindows(TOKENS, 4, 16, 1)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(_take(a, 3), _take(b, 3)))
    assert not torch.equal(a.next()[0], c.next()[0])
    state = a.state()
    expected = _take(a, 2)
    resumed = RandomWindows(TOKENS, 4, 16, 99)
    resumed.load_state(state)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(expected, _take(resumed, 2)))


def test_sequential_windows_walk_the_split_in_order_then_start_a_new_pass():
    sampler = SequentialWindows(TOKENS, 4, 100, seed=0)
    first_pass = [x[:, 0].tolist() for x, _ in _take(sampler, 2)]
    assert first_pass == [[0, 100, 200, 300], [400, 500, 600, 700]]
    x, _ = sampler.next()  # 800 fits (needs 101 tokens), 900 does not: a new pass at a seeded offset < 100
    assert x[0, 0] == 800 and sampler.passes == 1 and 0 <= x[1, 0] < 100 and x[2, 0] == x[1, 0] + 100
    state = sampler.state()
    expected = _take(sampler, 3)
    resumed = SequentialWindows(TOKENS, 4, 100, seed=5)
    resumed.load_state(state)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(expected, _take(resumed, 3)))


def test_token_data_picks_the_sampler_from_data_sampling():
    random = TokenData(TOKENS, TOKENS, None, None, False, sampling="random", seed=3)
    sequential = TokenData(TOKENS, TOKENS, None, None, False, sampling="sequential", seed=3)
    assert isinstance(random.train_batches(2, 8), RandomWindows)
    assert isinstance(sequential.train_batches(2, 8), SequentialWindows)


def test_val_batches_are_fixed_and_evenly_spread():
    first = fixed_eval_batches(TOKENS, 2, 4, 16)
    again = fixed_eval_batches(TOKENS, 2, 4, 16)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(first, again))
    starts = torch.cat([x[:, 0] for x, _ in first]).tolist()
    assert starts[0] == 0 and starts[-1] == 1000 - 17 and starts == sorted(starts)


def test_unknown_sampling_is_one_line():
    from ablate.data import check_data_config
    from tests.data.corpora import data_config

    data, tok = data_config(["data.sampling=shuffled"])
    assert check_data_config(data, tok, 64) == ["data.sampling=shuffled is not known; choose one of random, sequential"]


def test_the_order_follows_the_run_seed_unless_fixed():
    from ablate.data.batches import order_seed

    def first(seed_value):
        return RandomWindows(TOKENS, 4, 16, seed_value).next()[0]

    # seed (default): same run seed, same batches; another run seed, other batches
    assert torch.equal(first(order_seed(0, 3, "seed")), first(order_seed(0, 3, "seed")))
    assert not torch.equal(first(order_seed(0, 3, "seed")), first(order_seed(0, 4, "seed")))
    assert not torch.equal(first(order_seed(0, 3, "seed")), first(order_seed(1, 3, "seed")))  # data.seed still counts
    # fixed: data.seed alone, exactly the stream of runs recorded before data.order existed
    assert order_seed(5, 3, "fixed") == order_seed(5, 4, "fixed") == 5


def _batch_states(tmp_path, overrides):
    """The training sampler's state after each of 2 steps of a tiny run (a hook sees the train state)."""
    import ablate
    from ablate.training.loop import train

    states = []
    cfg = ablate.compose(["model=tiny", "train=smoke", "train.max_steps=2", "train.eval_batches=1",
                          "train.sample.tokens=0", "logger=none", "device=cpu", "data.max_bytes=3000000",
                          *overrides, f"out_dir={tmp_path / str(len(list(tmp_path.iterdir())))}"])
    train(cfg, overrides, hooks=[lambda state: states.append(repr(state.batches.state()))])
    return states


def test_seed_k_of_every_variant_sees_the_same_batches(tmp_path):
    relu, swiglu = (_batch_states(tmp_path, [f"ffn={ffn}", "seed=1"]) for ffn in ("relu", "swiglu"))
    assert len(relu) == 2 and relu == swiglu
    assert _batch_states(tmp_path, ["ffn=relu", "seed=2"]) != relu
    # data.order=fixed: every seed the same order, the one data.seed alone gives
    fixed = [_batch_states(tmp_path, ["ffn=relu", f"seed={s}", "data.order=fixed"]) for s in (1, 2)]
    assert fixed[0] == fixed[1] != relu


def test_fixed_order_keeps_the_hash_of_runs_recorded_before_data_order(tmp_path):
    from omegaconf import OmegaConf, open_dict

    import ablate
    from ablate.track import config_hash

    fixed = ablate.compose(["data.order=fixed"])
    before = ablate.compose([])
    with open_dict(before):
        del before.data["order"]  # a run recorded before the knob existed
    assert config_hash(fixed) == config_hash(before)
    assert config_hash(ablate.compose([])) != config_hash(before)  # the new default is another computation
    assert OmegaConf.select(ablate.compose([]), "data.order") == "seed"


def test_an_unknown_order_is_refused_in_one_line():
    import ablate
    from ablate.config import validate
    from ablate.spec import SpecError

    try:
        validate(ablate.compose(["data.order=shuffled"]))
    except SpecError as e:
        assert any(line.startswith("data.order=shuffled is not known") for line in e.problems)
    else:
        raise AssertionError("data.order=shuffled was accepted")
