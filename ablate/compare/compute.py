"""Effective compute: how much baseline training a variant's final val loss is worth.

For a variant whose runs end at val loss L after T tokens, the baseline's val curve (mean over its completed
seeds, by tokens) says how many tokens T_b the baseline needed to first reach L; the multiplier is T_b / T
(> 1: the variant reaches in T what the baseline needs more for). By FLOPs: T_b·F_b / (T·F_v) with F the runs'
FLOPs per token; by training time: the baseline's training seconds to reach L over the variant's own.

Between evaluations the curve is interpolated linearly. Where the variant ends below anything the baseline
reached, T_b is extrapolated from a power law L = A·T^(−α) fitted (least squares in log–log) to the later half of
the baseline's curve, and the result is marked extrapolated (none beyond MAX_EXTRAPOLATION × the baseline's
budget). The 95% interval is a percentile bootstrap over seeds:
variant seeds and baseline seeds resampled with replacement, BOOTSTRAP times, with a fixed generator (the same
runs give the same report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ablate.compare.curves import series
from ablate.compare.load import Run

BOOTSTRAP = 2000
MAX_EXTRAPOLATION = 100.0  # beyond 100× the baseline's own budget a fitted power law is not evidence


@dataclass(frozen=True)
class EffectiveCompute:
    tokens: float  # baseline tokens to reach the variant's loss / the variant's tokens
    low: float | None  # 95% bootstrap interval of `tokens`; None with fewer than 2 seeds on a side
    high: float | None
    flops: float | None  # the same in FLOPs (None when a run does not record flops_per_token)
    time: float | None  # the same in training seconds
    extrapolated: bool  # the variant ends below the baseline's curve: T_b from the power-law fit


@dataclass(frozen=True)
class Curve:
    """A baseline's mean val curve on one x axis: x ascending, y the mean over its seeds."""

    x: np.ndarray
    y: np.ndarray


def mean_curve(runs: list[Run], axis: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(grid, per-seed values on it): the val curves of `runs` on the union of their x values that all cover."""
    curves = [series(r, "val", axis) for r in runs]
    curves = [c for c in curves if len(c.x) >= 2]
    if len(curves) != len(runs) or not curves:
        return None
    start, stop = max(c.x[0] for c in curves), min(c.x[-1] for c in curves)
    grid = np.unique(np.concatenate([c.x[(c.x >= start) & (c.x <= stop)] for c in curves]))
    if len(grid) < 2:
        return None
    return grid, np.vstack([np.interp(grid, c.x, c.y) for c in curves])


def x_to_reach(curve: Curve, loss: float) -> tuple[float, bool] | None:
    """(x at which the curve first reaches `loss`, extrapolated?); None when the curve never gets there and its
    later half does not decrease as a power law."""
    below = np.flatnonzero(curve.y <= loss)
    if len(below):
        i = int(below[0])
        if i == 0:
            return float(curve.x[0]), False
        x0, x1, y0, y1 = curve.x[i - 1], curve.x[i], curve.y[i - 1], curve.y[i]
        return float(x0 + (x1 - x0) * (y0 - loss) / (y0 - y1)), False
    fit = power_law(curve)
    if fit is None or loss <= 0:
        return None
    scale, exponent = fit
    log_x = (math.log(scale) - math.log(loss)) / exponent
    if log_x > math.log(MAX_EXTRAPOLATION * curve.x[-1]):  # a fit says nothing that far out
        return None
    return math.exp(log_x), True


def power_law(curve: Curve) -> tuple[float, float] | None:
    """(A, α) of L = A·x^(−α), least squares of log L on log x over the later half of the curve (x > 0)."""
    keep = (curve.x > 0) & (curve.y > 0)
    x, y = curve.x[keep], curve.y[keep]
    if len(x) < 2:
        return None
    later = x >= x[0] + (x[-1] - x[0]) / 2
    if later.sum() < 2:
        return None
    slope, intercept = np.polyfit(np.log(x[later]), np.log(y[later]), 1)
    if slope >= 0:  # not decreasing: no power law to follow below its lowest point
        return None
    return float(math.exp(intercept)), float(-slope)


def _end(run: Run, column: str) -> float | None:
    """The run's x at its last val evaluation (its final val loss)."""
    for row in reversed(run.rows):
        if row.get("val/loss") is not None and row.get(column) is not None:
            return float(row[column])
    return None


def effective_compute(variant: list[Run], baseline: list[Run], seed: int = 0) -> EffectiveCompute | None:
    """The multipliers of the variant's completed runs against the baseline's (None without curves to read)."""
    finals = np.array([r.number("final/val_loss") for r in variant], dtype=float)
    ends = {axis: [_end(r, column) for r in variant] for axis, column in (("tokens", "tokens"), ("time", "time_s"))}
    by_tokens = mean_curve(baseline, "tokens")
    if by_tokens is None or not len(finals) or any(e is None or e <= 0 for e in ends["tokens"]):
        return None
    grid, per_seed = by_tokens
    variant_tokens = float(np.mean(ends["tokens"]))

    def ratio(chosen_finals: np.ndarray, chosen_baseline: np.ndarray) -> tuple[float, bool] | None:
        reach = x_to_reach(Curve(grid, per_seed[chosen_baseline].mean(axis=0)), float(chosen_finals.mean()))
        return None if reach is None else (reach[0] / variant_tokens, reach[1])

    point = ratio(finals, np.arange(len(baseline)))
    if point is None:
        return None
    low = high = None
    if len(finals) >= 2 and len(baseline) >= 2:
        rng = np.random.default_rng(seed)
        samples = []
        for _ in range(BOOTSTRAP):
            found = ratio(rng.choice(finals, len(finals)), rng.integers(0, len(baseline), len(baseline)))
            samples.append(math.nan if found is None else found[0])
        valid = np.asarray(samples)[np.isfinite(samples)]
        if len(valid) >= 0.95 * BOOTSTRAP:  # most resamples readable: else an interval would hide the rest
            low, high = (float(v) for v in np.percentile(valid, [2.5, 97.5]))
    flops_v = [r.number("flops_per_token") for r in variant]
    flops_b = [r.number("flops_per_token") for r in baseline]
    flops = None
    if all(f is not None for f in flops_v + flops_b):
        flops = point[0] * float(np.mean(flops_b)) / float(np.mean(flops_v))
    return EffectiveCompute(point[0], low, high, flops, _time_ratio(finals, ends["time"], baseline), point[1])


def _time_ratio(finals: np.ndarray, variant_seconds: list[float | None], baseline: list[Run]) -> float | None:
    by_time = mean_curve(baseline, "time")
    if by_time is None or any(s is None or s <= 0 for s in variant_seconds):
        return None
    grid, per_seed = by_time
    reach = x_to_reach(Curve(grid, per_seed.mean(axis=0)), float(finals.mean()))
    return None if reach is None else reach[0] / float(np.mean(variant_seconds))
