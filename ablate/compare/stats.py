"""Seed statistics and the verdict of a variant against its baseline.

Definitions (also in the README, "Compare runs"):
- spread: mean and sample standard deviation (ddof=1) of the per-seed final val losses, n = seeds.
- Δ = mean(variant) − mean(baseline); % change = 100 · Δ / mean(baseline) (negative = lower loss).
- σ = pooled standard deviation of the two groups' final val losses,
  sqrt(((n_v − 1)·s_v² + (n_b − 1)·s_b²) / (n_v + n_b − 2)) — the same σ the ladder's "2 × pooled std" rule uses.
- p = two-sided Welch t-test (scipy.stats.ttest_ind, equal_var=False) of the two groups.
- verdict: `single seed — not conclusive` when either group has fewer than 2 seeds; else `within noise` when
  |Δ| < 2σ or p ≥ 0.05; else `better` (Δ < 0) or `worse` (Δ > 0).

`beyond_noise` is that rule, the one place it is written: the verdict here and the ladder's decision to switch
(ablate.sweep.ladder, whose --sigmas and --alpha set its two thresholds) both call it, so they cannot disagree.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05
NOISE_SIGMAS = 2.0

BETTER, WORSE, NOISE, SINGLE = "better", "worse", "within noise", "single seed — not conclusive"
BASELINE, NO_RESULT = "baseline", "no result"


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float  # nan when n < 2
    n: int


@dataclass(frozen=True)
class Comparison:
    delta: float
    pct: float
    sigma: float  # pooled std; nan when either group has < 2 seeds
    p_value: float  # Welch; nan when either group has < 2 seeds
    verdict: str


def spread(values: list[float]) -> Spread | None:
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    return Spread(float(data.mean()), float(data.std(ddof=1)) if len(data) > 1 else math.nan, len(data))


def pct_change(new: float, old: float) -> float:
    """The original study's "% loss reduction" with its sign: 4.8434 → 4.4283 is −8.57%."""
    return 100.0 * (new - old) / old


def pooled_std(a: list[float], b: list[float]) -> float:
    if len(a) < 2 or len(b) < 2:
        return math.nan
    var_a, var_b = np.var(a, ddof=1), np.var(b, ddof=1)
    return float(math.sqrt(((len(a) - 1) * var_a + (len(b) - 1) * var_b) / (len(a) + len(b) - 2)))


def welch_p(a: list[float], b: list[float]) -> float:
    if len(a) < 2 or len(b) < 2:
        return math.nan
    with warnings.catch_warnings():  # identical seeds: scipy warns about precision; the result is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    if math.isnan(p):  # both groups without spread: the difference is exact (or exactly zero)
        p = 1.0 if np.mean(a) == np.mean(b) else 0.0
    return p


def compare(variant: list[float], baseline: list[float]) -> Comparison:
    """Variant vs baseline on their per-seed values (both non-empty)."""
    delta = float(np.mean(variant) - np.mean(baseline))
    pct = pct_change(float(np.mean(variant)), float(np.mean(baseline)))
    sigma, p = pooled_std(variant, baseline), welch_p(variant, baseline)
    return Comparison(delta, pct, sigma, p, verdict(delta, sigma, p, len(variant), len(baseline)))


def beyond_noise(delta: float, sigma: float, p: float, sigmas: float = NOISE_SIGMAS, alpha: float = ALPHA) -> bool:
    """A difference is real only when it is both large against the seed spread (|Δ| ≥ sigmas·σ) and significant
    (p < alpha): many seeds can make a tiny shift significant, and two seeds can show a wide gap that a t-test
    cannot confirm. A missing σ or p (nan: fewer than 2 seeds) is never beyond noise."""
    if math.isnan(delta) or math.isnan(sigma) or math.isnan(p):
        return False
    return abs(delta) >= sigmas * sigma and p < alpha


def verdict(delta: float, sigma: float, p: float, n_variant: int, n_baseline: int) -> str:
    if n_variant < 2 or n_baseline < 2:
        return SINGLE
    if not beyond_noise(delta, sigma, p):
        return NOISE
    return BETTER if delta < 0 else WORSE
