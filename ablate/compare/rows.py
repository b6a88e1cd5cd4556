"""One table row per variant: seed statistics, comparison with the baseline, cost, status counts and flags.

Only `completed` runs with a finite final val loss enter the statistics: a diverged run's last eval was taken
before it blew up and a running one has not finished, so averaging them in would flatter or blur the variant.
They are counted in the status column and drawn in the curves.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ablate.compare import stats
from ablate.compare.compute import EffectiveCompute, effective_compute
from ablate.compare.flags import run_flags
from ablate.compare.group import FAMILIES, Section, display
from ablate.spec import at_added_default
from ablate.compare.load import Run

STATUSES = ("completed", "diverged", "failed", "running")
ROUTER_IMBALANCE = "train/ffn/imbalance"  # logged by ffn=moe (ablate.model.moe): max / mean expert load


@dataclass
class VariantRow:
    label: str
    runs: list[Run]
    is_baseline: bool = False
    final: list[float] = field(default_factory=list)  # per counted seed
    pair_keys: list[Any] = field(default_factory=list)  # per counted seed: what pairs it across variants
    best: list[float] = field(default_factory=list)
    final_spread: stats.Spread | None = None
    best_spread: stats.Spread | None = None
    comparison: stats.Comparison | None = None
    compute: EffectiveCompute | None = None  # baseline compute its final loss is worth (ablate.compare.compute)
    verdict: str = stats.NO_RESULT
    params_total: float | None = None
    params_non_embedding: float | None = None
    params_active: float | None = None  # params/active: what one token passes through (< total for a MoE)
    flops_per_token: float | None = None  # training FLOPs per token of the active parameters
    router_imbalance: float | None = None  # mean over counted seeds of the last logged train/ffn/imbalance
    tokens_per_s: float | None = None  # mean over counted seeds
    time_s: float | None = None  # mean training time (excludes eval) over counted seeds
    tokens_per_s_std: float | None = None  # sample std over the same seeds (None with one)
    time_s_std: float | None = None
    kv_cache_bytes: float | None = None  # inference/kv_cache_bytes (the same for every seed)
    decode_tokens_per_s: float | None = None  # means over the counted seeds of inference/*
    decode_tokens_per_s_batched: float | None = None
    prefill_tokens_per_s: float | None = None
    lr: str = ""  # train.lr of its runs (several values joined with "/": a variant mixing them)
    peak_mem_bytes: float | None = None  # max over seeds
    statuses: Counter = field(default_factory=Counter)
    flags: list[tuple[str, str]] = field(default_factory=list)  # (run dir name, message)
    phase: Any = None
    components: str = ""  # phases: the six choices
    change: str = ""  # phases: what differs from the previous phase
    pct_vs_previous: float | None = None  # phases: % change of mean final val loss vs the previous phase

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]


def counted(run: Run) -> bool:
    value = run.number("final/val_loss")
    return run.status == "completed" and value is not None and math.isfinite(value)


def variant_row(label: str, runs: list[Run]) -> VariantRow:
    row = VariantRow(label=label, runs=runs)
    done = [r for r in runs if counted(r)]
    row.final = [r.number("final/val_loss") for r in done]
    row.pair_keys = [pair_key(r) for r in done]
    row.best = [b for r in done if (b := r.number("best/val_loss")) is not None]
    row.final_spread, row.best_spread = stats.spread(row.final), stats.spread(row.best)
    row.params_total = _first(runs, "params/total")
    row.params_non_embedding = _first(runs, "params/non_embedding")
    row.params_active, row.flops_per_token = _first(runs, "params/active"), _first(runs, "flops_per_token")
    measured = done or runs  # a variant that never completed still shows what its runs cost
    row.tokens_per_s, row.tokens_per_s_std = _mean(measured, "perf/tokens_per_s"), _std(measured, "perf/tokens_per_s")
    row.time_s, row.time_s_std = _mean(measured, "time_s"), _std(measured, "time_s")
    row.router_imbalance = _mean(measured, ROUTER_IMBALANCE)
    row.kv_cache_bytes = _first(runs, "inference/kv_cache_bytes")
    row.decode_tokens_per_s = _mean(measured, "inference/decode_tokens_per_s")
    row.decode_tokens_per_s_batched = _mean(measured, "inference/decode_tokens_per_s_batched")
    row.prefill_tokens_per_s = _mean(measured, "inference/prefill_tokens_per_s")
    row.lr = "/".join(dict.fromkeys(str(lr) for r in runs if (lr := (r.config.get("train") or {}).get("lr"))
                                    is not None))
    peaks = [p for r in runs if (p := r.number("perf/peak_mem_bytes")) is not None]
    row.peak_mem_bytes = max(peaks) if peaks else None
    row.statuses = Counter(r.status for r in runs)
    row.flags = [(r.name, message) for r in runs for message in run_flags(r)]
    return row


def pair_key(run: Run) -> tuple[Any, ...]:
    """Runs of two variants are a pair when they share this: the seed and the order of training batches. A run
    recorded before `data.order` existed drew its batches from data.seed alone (`fixed`)."""
    data = run.config.get("data") or {}
    order = str(data.get("order", "fixed"))
    return (str(run.seed), str(data.get("seed", 0)), order)


def _first(runs: list[Run], key: str) -> float | None:
    return next((v for r in runs if (v := r.number(key)) is not None), None)


def _mean(runs: list[Run], key: str) -> float | None:
    values = [v for r in runs if (v := r.number(key)) is not None]
    return float(np.mean(values)) if values else None


def _std(runs: list[Run], key: str) -> float | None:
    values = [v for r in runs if (v := r.number(key)) is not None]
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def section_rows(section: Section) -> list[VariantRow]:
    """The section's table: sorted by mean final val loss (phases: by phase), variants without a result last."""
    rows = [variant_row(label, runs) for label, runs in section.variants.items()]
    base = next((r for r in rows if r.label == section.baseline), None)
    comparisons = {}
    if base is not None and base.final:  # one family per study: Holm over its comparisons with the baseline
        arms = {r.label: stats.Arm(r.final, r.pair_keys) for r in rows}
        comparisons = stats.study_comparisons(arms, base.label)
    for row in rows:
        row.is_baseline = row is base
        if not row.final:
            row.verdict = _why_no_result(row)
        elif row.is_baseline:
            row.verdict = stats.BASELINE
        elif row.label in comparisons:
            row.comparison = comparisons[row.label]
            row.verdict = row.comparison.verdict
            row.compute = effective_compute([r for r in row.runs if counted(r)],
                                            [r for r in base.runs if counted(r)])
        else:
            row.verdict = "no baseline result"
    headline = compute_headline(rows)
    if headline:
        section.notes.insert(0, headline)
    if section.phases:
        _add_phase_columns(section, rows)
        return rows  # already in phase order
    return sorted(rows, key=lambda r: (r.final_spread is None, r.final_spread.mean if r.final_spread else 0.0))


def compute_headline(rows: list[VariantRow]) -> str:
    """One line: what each variant's final loss is worth in baseline compute."""
    parts = []
    for row in rows:
        c = row.compute
        if c is None:
            continue
        interval = f" ({c.low:.2f}–{c.high:.2f})" if c.low is not None else ""
        others = [f"{value:.2f}× {name}" for name, value in (("FLOPs", c.flops), ("training time", c.time))
                  if value is not None]
        parts.append(f"{row.label} ≈ {c.tokens:.2f}× baseline tokens{interval}"
                     + (", extrapolated" if c.extrapolated else "") + "".join(f", {o}" for o in others))
    return "effective compute: " + "; ".join(parts) if parts else ""


def _why_no_result(row: VariantRow) -> str:
    """`all diverged` / `all failed` when every run ended that way, else `no result`."""
    statuses = set(row.statuses)
    return f"all {statuses.pop()}" if len(statuses) == 1 and statuses <= {"diverged", "failed"} else stats.NO_RESULT


def _add_phase_columns(section: Section, rows: list[VariantRow]) -> None:
    previous = None
    for row in rows:
        row.phase = row.runs[0].summary.get("phase")
        choices = section.choices.get(row.label, {})
        row.components = " + ".join(
            (f"dropout {choices[f'{f}.name']}" if f == "dropout" else choices[f"{f}.name"])
            for f in FAMILIES if f"{f}.name" in choices and not at_added_default(f"{f}.name", choices[f"{f}.name"]))
        if previous is not None:
            before = section.choices.get(previous.label, {})
            row.change = _changes(before, choices)
            if row.final_spread and previous.final_spread:
                row.pct_vs_previous = stats.pct_change(row.final_spread.mean, previous.final_spread.mean)
        previous = row


def _changes(before: dict[str, str], after: dict[str, str]) -> str:
    """What a phase changed: the component options; other keys only when no option changed."""
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    options = [k for k in changed if k.split(".")[0] in FAMILIES and k.endswith(".name")]
    return ", ".join(f"{display(k)}: {before.get(k, '-')} → {after.get(k, '-')}"
                     for k in (options or changed)) or "no change"


def status_text(statuses: Counter) -> str:
    parts = [f"{statuses[s]} {s}" for s in STATUSES if statuses.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(statuses.items()) if s not in STATUSES]
    return ", ".join(parts) or "no runs"
