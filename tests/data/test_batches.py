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
