"""Seed statistics and verdicts against scipy.stats on constructed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ablate.compare import stats


def test_pct_change_matches_the_original_study():
    # "loss decreased from 4.8434 to 4.4283, an 8.57% reduction"
    assert stats.pct_change(4.4283, 4.8434) == pytest.approx(-8.57, abs=0.005)
    assert round(stats.pct_change(4.4283, 4.8434), 2) == -8.57


def test_single_runs_are_not_conclusive():
    result = stats.compare([4.4283], [4.8434])
    assert result.verdict == stats.SINGLE == "single seed — not conclusive"
    assert result.delta == pytest.approx(4.4283 - 4.8434)
    assert round(result.pct, 2) == -8.57
    assert math.isnan(result.p_value) and math.isnan(result.sigma)
    # one side with seeds is still not enough
    assert stats.compare([4.40, 4.41, 4.42], [4.8434]).verdict == stats.SINGLE


def test_welch_p_and_pooled_sigma_match_scipy():
    rng = np.random.default_rng(0)
    a, b = list(rng.normal(3.9, 0.02, 4)), list(rng.normal(4.0, 0.05, 6))
    result = stats.compare(a, b)
    assert result.p_value == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    # σ is the pooled std: exactly the one Student's t-test uses, t = Δ / (σ √(1/n_a + 1/n_b))
    student = scipy_stats.ttest_ind(a, b, equal_var=True).statistic
    assert result.delta / (result.sigma * math.sqrt(1 / 4 + 1 / 6)) == pytest.approx(student, rel=1e-12)
    assert result.verdict == stats.BETTER


def test_spread_is_mean_and_sample_std():
    s = stats.spread([4.0, 4.02, 4.01])
    assert (s.mean, s.n) == (pytest.approx(4.01), 3)
    assert s.std == pytest.approx(np.std([4.0, 4.02, 4.01], ddof=1))
    assert math.isnan(stats.spread([4.0]).std)
    assert stats.spread([]) is None


def test_better_and_worse():
    base = [4.00, 4.02, 4.01]
    assert stats.compare([3.80, 3.81, 3.79], base).verdict == stats.BETTER
    assert stats.compare([4.20, 4.21, 4.19], base).verdict == stats.WORSE


def test_within_noise_when_difference_is_under_two_sigma_even_if_significant():
    # many seeds make p tiny, but the shift is smaller than 2 pooled std: noise by the |Δ| < 2σ rule
    rng = np.random.default_rng(1)
    base = list(rng.normal(0.0, 1.0, 400))
    variant = list(np.asarray(rng.normal(0.0, 1.0, 400)) - 0.5)
    result = stats.compare(variant, base)
    assert result.p_value < 0.05
    assert abs(result.delta) < 2 * result.sigma
    assert result.verdict == stats.NOISE == "within noise"


def test_within_noise_when_p_is_high_even_if_difference_exceeds_two_sigma():
    variant, base = [0.25, 0.35], [0.0, 0.1]
    result = stats.compare(variant, base)
    assert abs(result.delta) >= 2 * result.sigma
    assert result.p_value == pytest.approx(scipy_stats.ttest_ind(variant, base, equal_var=False).pvalue)
    assert result.p_value >= 0.05
    assert result.verdict == stats.NOISE


def test_identical_seeds_are_decided_without_nan():
    assert stats.compare([4.0, 4.0], [4.0, 4.0]).verdict == stats.NOISE
    exact = stats.compare([3.9, 3.9], [4.0, 4.0])
    assert exact.p_value == 0.0 and exact.verdict == stats.BETTER
