"""Seed statistics and the verdict of a variant against its baseline — the one decision rule of the project.

Definitions (also in the report's "Definitions" section):
- spread: mean and sample standard deviation (ddof=1) of the per-seed final val losses, n = seeds.
- Δ = mean(variant) − mean(baseline); % change = 100 · Δ / mean(baseline) (negative = lower loss).
- σ = pooled standard deviation of the two groups' final val losses,
  sqrt(((n_v − 1)·s_v² + (n_b − 1)·s_b²) / (n_v + n_b − 2)).
- test: `paired t` when every run of each arm has a partner in the other with the same seed and the same data
  order (a paired design: seed k of both arms saw the same batches), p = scipy.stats.ttest_rel on those pairs;
  otherwise `Welch`, p = scipy.stats.ttest_ind(equal_var=False). Both two-sided.
- p adjusted: Holm's step-down adjustment over the family of a study's comparisons against its baseline.
- verdict: `single seed — not conclusive` when either group has fewer than 2 seeds; else `within noise` unless
  |Δ| ≥ 2σ AND adjusted p < 0.05; else `better` (Δ < 0) or `worse` (Δ > 0).

`beyond_noise` is that rule and `study_comparisons` applies it to a study: the report's verdicts and the ladder's
decision to switch (ablate.sweep.ladder, whose --sigmas and --alpha set the thresholds) both call them, so they
cannot disagree.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05
NOISE_SIGMAS = 2.0
POWER = 0.8
MAX_SEEDS = 10_000  # seeds for 80% power: beyond this the answer is "more than"

BETTER, WORSE, NOISE, SINGLE = "better", "worse", "within noise", "single seed — not conclusive"
BASELINE, NO_RESULT = "baseline", "no result"
PAIRED, WELCH = "paired t", "Welch"


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float  # nan when n < 2
    n: int


@dataclass(frozen=True)
class Arm:
    """One variant's per-seed final losses and, per value, what pairs it with a run of another variant (its seed
    and data order); keys None: unpaired."""

    values: list[float]
    keys: list[Hashable] | None = None


@dataclass(frozen=True)
class Comparison:
    delta: float
    pct: float
    sigma: float  # pooled std; nan when either group has < 2 seeds
    p_value: float  # of `test`; nan when either group has < 2 seeds
    verdict: str
    test: str = WELCH
    p_adjusted: float = math.nan  # Holm over the study's comparisons; equals p_value when it is alone
    p_welch: float = math.nan  # Welch's p even when the paired test decides (summary.csv's p_value_welch)
    pairs: int = 0  # pairs the paired test used
    sd_diff: float = math.nan  # paired: sample std of the per-pair differences
    seeds_for_power: float | None = None  # within noise: seeds per arm for 80% power (inf: > MAX_SEEDS)


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


def _exact_when_nan(p: float, a: Sequence[float], b: Sequence[float]) -> float:
    if math.isnan(p):  # no spread at all: the difference is exact (or exactly zero)
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    return p


def welch_p(a: list[float], b: list[float]) -> float:
    if len(a) < 2 or len(b) < 2:
        return math.nan
    with warnings.catch_warnings():  # identical seeds: scipy warns about precision; the result is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    return _exact_when_nan(p, a, b)


def pairs_of(variant: Arm, baseline: Arm) -> list[tuple[float, float]] | None:
    """(variant, baseline) value pairs when the design is paired: both arms keyed, no key twice, the same keys
    on both sides, at least 2 pairs; else None (the unpaired test is used)."""
    if variant.keys is None or baseline.keys is None:
        return None
    v, b = dict(zip(variant.keys, variant.values)), dict(zip(baseline.keys, baseline.values))
    if len(v) != len(variant.values) or len(b) != len(baseline.values) or set(v) != set(b) or len(v) < 2:
        return None
    return [(v[k], b[k]) for k in sorted(v, key=repr)]


def paired_p(pairs: list[tuple[float, float]]) -> float:
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(scipy_stats.ttest_rel(a, b).pvalue)
    return _exact_when_nan(p, a, b)


def compare(variant: list[float] | Arm, baseline: list[float] | Arm) -> Comparison:
    """Variant vs baseline on their per-seed values (both non-empty), alone (no other comparison in its family)."""
    return adjust([raw_comparison(_arm(variant), _arm(baseline))])[0]


def _arm(values: list[float] | Arm) -> Arm:
    return values if isinstance(values, Arm) else Arm(list(values))


def raw_comparison(variant: Arm, baseline: Arm) -> Comparison:
    """Δ, σ, the test and its raw p; the verdict comes with the family's adjustment (`adjust`)."""
    a, b = variant.values, baseline.values
    delta = float(np.mean(a) - np.mean(b))
    pct = pct_change(float(np.mean(a)), float(np.mean(b)))
    sigma, p_welch = pooled_std(a, b), welch_p(a, b)
    pairs = pairs_of(variant, baseline)
    if pairs is None:
        return Comparison(delta, pct, sigma, p_welch, NO_RESULT, WELCH, math.nan, p_welch)
    diffs = [x - y for x, y in pairs]
    return Comparison(delta, pct, sigma, paired_p(pairs), NO_RESULT, PAIRED, math.nan, p_welch, len(pairs),
                      float(np.std(diffs, ddof=1)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order; nan entries stay nan and are not counted in m.
    With p sorted ascending p(1) ≤ … ≤ p(m): p̃(i) = max over j ≤ i of min(1, (m − j + 1) · p(j))."""
    present = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    running, m = 0.0, len(present)
    for rank, i in enumerate(sorted(present, key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def adjust(family: list[Comparison], sigmas: float = NOISE_SIGMAS, alpha: float = ALPHA,
           n_pairs: Sequence[tuple[int, int]] | None = None) -> list[Comparison]:
    """The family's comparisons with Holm-adjusted p, their verdicts by `beyond_noise`, and for a within-noise
    one the seeds per arm 80% power would need. `n_pairs`: (n_variant, n_baseline) per comparison; default:
    taken as ≥ 2 seeds when the comparison has a p."""
    adjusted = holm([c.p_value for c in family])
    out = []
    for index, (c, p_adj) in enumerate(zip(family, adjusted)):
        counts = n_pairs[index] if n_pairs else ((2, 2) if not math.isnan(c.p_value) else (1, 1))
        decided = verdict(c.delta, c.sigma, p_adj, *counts, sigmas=sigmas, alpha=alpha)
        power = None
        if decided == NOISE:
            spread_ = c.sd_diff if c.test == PAIRED else c.sigma
            power = seeds_for_power(c.delta, spread_, alpha, paired=c.test == PAIRED)
        out.append(replace(c, p_adjusted=p_adj, verdict=decided, seeds_for_power=power))
    return out


def study_comparisons(arms: dict[str, Arm], baseline: str, sigmas: float = NOISE_SIGMAS, alpha: float = ALPHA
                      ) -> dict[str, Comparison]:
    """Every other arm against `baseline`, Holm-adjusted over the family of those comparisons (arms with no
    values, and the baseline itself, are left out)."""
    base = arms[baseline]
    names = [n for n, arm in arms.items() if n != baseline and arm.values]
    raw = [raw_comparison(arms[n], base) for n in names]
    counts = [(len(arms[n].values), len(base.values)) for n in names]
    return dict(zip(names, adjust(raw, sigmas, alpha, counts)))


def beyond_noise(delta: float, sigma: float, p: float, sigmas: float = NOISE_SIGMAS, alpha: float = ALPHA) -> bool:
    """A difference is real only when it is both large against the seed spread (|Δ| ≥ sigmas·σ) and significant
    (p < alpha, p Holm-adjusted within its study): many seeds can make a tiny shift significant, and two seeds can
    show a wide gap that a t-test cannot confirm. A missing σ or p (nan: fewer than 2 seeds) is never beyond
    noise."""
    if math.isnan(delta) or math.isnan(sigma) or math.isnan(p):
        return False
    return abs(delta) >= sigmas * sigma and p < alpha


def verdict(delta: float, sigma: float, p: float, n_variant: int, n_baseline: int, sigmas: float = NOISE_SIGMAS,
            alpha: float = ALPHA) -> str:
    if n_variant < 2 or n_baseline < 2:
        return SINGLE
    if not beyond_noise(delta, sigma, p, sigmas, alpha):
        return NOISE
    return BETTER if delta < 0 else WORSE


def t_test_power(effect: float, n: int, alpha: float = ALPHA, paired: bool = False) -> float:
    """Power of the two-sided t-test at standardized effect `effect` with n seeds per arm (paired: n pairs,
    effect = Δ / sd of the differences; else two equal groups, effect = Δ / σ): P(|T| > t_crit) with T
    noncentral t."""
    df, noncentrality = (n - 1, effect * math.sqrt(n)) if paired else (2 * n - 2, effect * math.sqrt(n / 2))
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    nct = scipy_stats.nct(df, noncentrality)
    return float(nct.sf(critical) + nct.cdf(-critical))


def seeds_for_power(delta: float, sd: float, alpha: float = ALPHA, power: float = POWER, paired: bool = False
                    ) -> float | None:
    """The fewest seeds per arm (≥ 2) at which the t-test detects |Δ| with probability `power`, given the seed
    spread `sd`; inf when Δ = 0 or the answer exceeds MAX_SEEDS, None when sd is unknown."""
    if math.isnan(delta) or math.isnan(sd):
        return None
    if delta == 0:
        return math.inf
    if sd == 0:
        return 2.0
    effect = abs(delta) / sd
    low, high = 2, 2
    while t_test_power(effect, high, alpha, paired) < power:  # doubling, then bisection: power grows with n
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return math.inf
    while low < high:
        mid = (low + high) // 2
        if t_test_power(effect, mid, alpha, paired) >= power:
            high = mid
        else:
            low = mid + 1
    return float(high)
