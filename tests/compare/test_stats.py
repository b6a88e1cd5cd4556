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


def test_holm_against_a_hand_computed_example():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06; nan is not counted
    assert stats.holm([0.01, 0.04, 0.03, math.nan, 0.005]) == pytest.approx([0.03, 0.06, 0.06, math.nan, 0.02],
                                                                          nan_ok=True)
    assert stats.holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])  # capped at 1 only when over it
    assert stats.holm([0.7, 0.6]) == pytest.approx([1.0, 1.0])


def test_a_family_of_comparisons_is_decided_on_holm_adjusted_p():
    base = [4.00, 4.02, 4.01, 3.99]
    clear = [3.70, 3.72, 3.71, 3.69]
    borderline = [3.90, 3.99, 3.93, 3.96]  # > 2σ lower; raw Welch p just under 0.05, not after Holm with m = 3
    other = [4.01, 4.00, 4.03, 3.98]
    arms = {"base": stats.Arm(base), "clear": stats.Arm(clear), "borderline": stats.Arm(borderline),
            "other": stats.Arm(other)}
    found = stats.study_comparisons(arms, "base")
    raw = {name: scipy_stats.ttest_ind(arms[name].values, base, equal_var=False).pvalue for name in found}
    ordered = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for rank, name in enumerate(ordered):
        running = max(running, min(1.0, (3 - rank) * raw[name]))
        expected[name] = running
    for name, comparison in found.items():
        assert comparison.test == stats.WELCH and comparison.p_value == pytest.approx(raw[name])
        assert comparison.p_adjusted == pytest.approx(expected[name])
    assert raw["borderline"] < 0.05 <= expected["borderline"]
    assert abs(found["borderline"].delta) >= 2 * found["borderline"].sigma
    assert found["borderline"].verdict == stats.NOISE and found["clear"].verdict == stats.BETTER
    assert stats.compare(borderline, base).verdict == stats.BETTER  # alone, the same numbers pass


def test_paired_seeds_use_the_paired_t_test():
    base = [4.00, 4.10, 3.95, 4.05]
    variant = [3.97, 4.06, 3.93, 4.01]  # every seed a little lower: Welch cannot see it, pairs can
    keys = [(s, 0, "seed") for s in range(4)]
    paired = stats.compare(stats.Arm(variant, keys), stats.Arm(base, keys))
    assert paired.test == stats.PAIRED and paired.pairs == 4
    assert paired.p_value == pytest.approx(scipy_stats.ttest_rel(variant, base).pvalue, rel=1e-12)
    assert paired.p_welch == pytest.approx(scipy_stats.ttest_ind(variant, base, equal_var=False).pvalue)
    assert paired.p_value < 0.05 < paired.p_welch
    # pairs are matched by key, not by position
    shuffled = stats.compare(stats.Arm(variant[::-1], keys[::-1]), stats.Arm(base, keys))
    assert shuffled.p_value == pytest.approx(paired.p_value, rel=1e-12)
    # no partner for every run (another seed, or another data order), or no keys: Welch
    for other in ([(s, 0, "seed") for s in (0, 1, 2, 5)], [(s, 0, "fixed") for s in range(4)], None):
        unpaired = stats.compare(stats.Arm(variant, other), stats.Arm(base, keys))
        assert unpaired.test == stats.WELCH and unpaired.p_value == pytest.approx(paired.p_welch)


@pytest.mark.parametrize("effect, paired, seeds", [(0.5, False, 64), (0.8, False, 26), (0.2, False, 394),
                                                    (0.5, True, 34), (1.0, True, 10)])
def test_seeds_for_80_percent_power_match_the_standard_tables(effect, paired, seeds):
    """Cohen (1988) / G*Power, two-sided α = 0.05, power 0.8: d = 0.5 → 64 per group, 0.8 → 26, 0.2 → 394;
    paired d_z = 0.5 → 34 pairs, d_z = 1.0 → 10."""
    assert stats.seeds_for_power(effect * 0.03, 0.03, paired=paired) == seeds
    assert stats.t_test_power(effect, seeds, paired=paired) >= 0.8 > stats.t_test_power(effect, seeds - 1,
                                                                                          paired=paired)


def test_power_is_given_for_within_noise_rows_only():
    rng = np.random.default_rng(3)
    base = list(rng.normal(4.0, 0.05, 3))
    noise = stats.compare([b - 0.02 for b in rng.normal(4.0, 0.05, 3)], base)
    assert noise.verdict == stats.NOISE and noise.seeds_for_power >= 2
    assert stats.compare([3.0, 3.01, 3.02], base).seeds_for_power is None
    assert stats.compare([3.0], base).seeds_for_power is None  # single seed: no σ to plan with
