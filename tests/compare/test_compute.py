"""Effective compute on synthetic val curves whose answers are known in closed form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ablate.compare.compute import effective_compute
from ablate.compare.load import Run

XS = np.arange(0, 10_001, 1000, dtype=float)  # tokens at each eval


def run(curve, offset=0.0, seed=0, tokens_per_s=100.0, flops_per_token=1000.0, xs=XS):
    rows = [{"step": i, "tokens": float(x), "time_s": float(x) / tokens_per_s, "val/loss": float(curve(x)) + offset}
            for i, x in enumerate(xs)]
    summary = {"status": "completed", "seed": seed, "final/val_loss": rows[-1]["val/loss"],
               "flops_per_token": flops_per_token}
    return Run(Path(f"/runs/{seed}"), summary, {"seed": seed}, rows)


def linear(x):
    return 5.0 - x * 1e-4  # 5.0 at 0 tokens, 4.0 at 10k


def test_interpolated_on_the_baseline_curve_by_tokens_flops_and_time():
    baseline = [run(linear, +0.01, 0), run(linear, -0.01, 1)]  # mean curve: exactly `linear`
    # the variant ends (at 10k tokens) at 4.3, which the baseline reaches at 7k tokens = 70 s
    variant = [run(lambda x: 4.3 + (10_000 - x) * 1e-4, d, s, tokens_per_s=50.0, flops_per_token=2000.0)
               for s, d in enumerate((0.02, -0.02))]
    found = effective_compute(variant, baseline)
    assert found.tokens == pytest.approx(0.7) and not found.extrapolated
    assert found.flops == pytest.approx(0.7 * 1000 / 2000)  # baseline FLOPs to reach it / the variant's
    assert found.time == pytest.approx(70.0 / 200.0)  # the variant trains at half the speed
    assert found.low <= found.tokens <= found.high


def test_below_the_baseline_curve_a_power_law_fit_extrapolates():
    def power(x):
        return 10.0 * np.maximum(x, 1.0) ** -0.1

    baseline = [run(power, 0.0, s) for s in range(2)]
    target = 10.0 * 20_000 ** -0.1  # the baseline would reach it at 20k tokens; the variant does at 10k
    variant = [run(lambda x: target + (10_000 - x) * 1e-6, 0.0, s) for s in range(2)]
    found = effective_compute(variant, baseline)
    assert found.extrapolated and found.tokens == pytest.approx(2.0, rel=1e-6)
    # identical seeds on both sides: every resample is the same, so the interval is the point
    assert found.low == pytest.approx(2.0, rel=1e-6) and found.high == pytest.approx(2.0, rel=1e-6)


def test_the_interval_is_a_bootstrap_over_seeds_and_reproducible():
    baseline = [run(linear, d, s) for s, d in enumerate((0.03, -0.01, -0.02))]
    variant = [run(lambda x: 4.3 + (10_000 - x) * 1e-4, d, s) for s, d in enumerate((0.05, -0.04, 0.0))]
    first, again = effective_compute(variant, baseline), effective_compute(variant, baseline)
    assert first == again
    assert first.low < first.tokens < first.high
    # the extremes of the resampled means bound the interval: variant mean in [4.26, 4.35], baseline ±0.03
    assert 0.6 < first.low and first.high < 0.8


def test_single_seeds_give_a_point_without_interval_and_no_curve_gives_nothing():
    found = effective_compute([run(lambda x: 4.5 + (10_000 - x) * 1e-4)], [run(linear)])
    assert found.tokens == pytest.approx(0.5) and found.low is None and found.high is None
    flat = [run(lambda x: 5.0)]  # never below 5.0, and no decrease to extrapolate
    assert effective_compute([run(lambda x: 4.5 + (10_000 - x) * 1e-4)], flat) is None
