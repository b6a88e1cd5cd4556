"""The tables as text: formatted cells (shared with the HTML page), summary.md and summary.csv."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter

from ablate.compare import stats
from ablate.compare.group import Section
from ablate.compare.rows import VariantRow, status_text

COLUMNS = ["variant", "lr", "final val loss", "best val loss", "Δ vs baseline", "% vs baseline", "test", "p", "p (Holm)",
           "verdict", "seeds for 80% power", "compute ×", "params (total / non-emb.)", "KV cache · decode tok/s",
           "tokens/s (machine)", "train time (machine)", "peak memory", "runs", "flags"]
PHASE_COLUMNS = ["phase", "components", "change", "final val loss", "% vs phase 0 (cumulative)",
                 "% vs previous phase", "test", "p vs phase 0", "p (Holm)", "verdict vs phase 0",
                 "seeds for 80% power", "compute ×", "params (total / non-emb.)", "KV cache · decode tok/s",
                 "tokens/s", "train time", "peak memory", "runs", "flags"]

DEFINITIONS = """\
- Statistics use completed runs only (n = their seeds); diverged, failed and running runs are counted in `runs`.
- `variant`: the runs that differ only in seed (and data order); its colour is fixed by its name.
- `final val loss`: mean ± sample std (ddof=1) of the last evaluation's val loss (nats/token) over seeds; \
`best val loss`: the same of the lowest val loss each run reached.
- `Δ` = mean(variant) − mean(baseline); `%` = 100 · Δ / mean(baseline): negative means lower loss (4.8434 → 4.4283 \
is −8.57%, the original study's "8.57% reduction").
- `test`: `paired t` when every completed run of each side has a partner on the other with the same seed and the \
same data order (seed k of both saw the same batches): p = two-sided paired t-test on the per-seed differences \
(scipy.stats.ttest_rel); otherwise `Welch`: two-sided Welch t-test (scipy.stats.ttest_ind, equal_var=False). \
`p`: that test's raw p-value.
- `p (Holm)`: p adjusted by Holm's step-down method over the study's m comparisons against its baseline: with raw \
p sorted p(1) ≤ … ≤ p(m), p̃(i) = max over j ≤ i of min(1, (m − j + 1) · p(j)).
- σ = pooled std of the two groups' final val losses, sqrt(((n_v−1)s_v² + (n_b−1)s_b²)/(n_v+n_b−2)).
- `verdict` (the one rule, also the ladder's): `single seed — not conclusive` if either side has < 2 seeds; \
`within noise` unless |Δ| ≥ 2σ AND p (Holm) < 0.05; else `better` / `worse`.
- `seeds for 80% power` (within-noise rows): the fewest seeds per side at which the row's test, two-sided at \
α = 0.05, detects the observed |Δ| with probability 0.8, from the noncentral t: effect |Δ|/σ, df 2n−2, \
noncentrality effect·√(n/2) (paired: effect |Δ|/s_d with s_d the std of the per-seed differences, df n−1, \
noncentrality effect·√n). † marks |Δ| < 2σ: the σ margin of the rule does not shrink with seeds, so no number of \
seeds makes that row beyond noise; `> 10,000` (summary.csv: inf): more than that, or Δ = 0.
- `compute ×` (effective compute): the baseline tokens needed to reach the variant's mean final val loss, over the \
variant's own tokens: T_b / T_v, with T_b read off the baseline's mean val curve by tokens (linear between evals; \
`ext.`: below anything the baseline reached, from a power law L = A·T^(−α) fitted in log–log to the later half of \
its curve). > 1: the variant is worth more baseline compute than it used. In brackets: 95% percentile bootstrap \
over seeds (2,000 resamples of both sides' seeds). The headline and summary.csv give it by FLOPs too \
(T_b·F_b / (T_v·F_v), F = FLOPs per token) and by training time (baseline seconds to reach the loss / the \
variant's).
- `lr`: the peak learning rate (train.lr) its runs trained at. With `study.tune_lr=true` it is the variant's own: \
the lr of study.lr_grid whose stage-1 run (first seed, short budget) ended with the lowest final val loss; the \
`lr sensitivity` section shows those losses per lr, and its runs are left out of every other table. After a \
rerun with another grid or budget, the runs at an lr the sweep no longer chooses, and stage-1 runs its current \
choice was not made from, are left out (the header says how many; lr_tuning/choices.json has the choice).
- `params`: parameters in total and without the embedding tables (input embedding and, if untied, the output head); `active` (a mixture of experts): the parameters one token passes through (summary.json `params/active`: embeddings, attention, router, shared experts and top_k routed experts); its FLOPs per token, and so `compute ×` by FLOPs, count only those.
- `router imbalance` (only where a run logged it: `ffn=moe`): mean over seeds of the last train row's `train/ffn/imbalance`, the most loaded expert's share of the routed assignments over the mean share, per optimizer step, averaged over the row's steps and the MoE layers (1 = balanced; at most n_experts / top_k).
- `KV cache · decode tok/s`: bytes of decoding state one sequence needs at the model's block_size (summary.json \
`inference/kv_cache_bytes`): Σ over layers of the attention's own formula (`Attention.cache_numel`: keys and values \
per kv head for MHA/GQA/MQA, the latent plus the shared RoPE key for MLA, a window for local, a fixed state for \
linear attention) × the bytes of the decoding dtype; then (depends on the machine) greedy decoding tokens/s with that \
cache, batch 1, after training on the run's device, mean over seeds. summary.csv has both, the batched rate and \
prefill tokens/s.
- `tokens/s`, `train time` (marked `machine`: they depend on the hardware and its load, not on the architecture \
alone; identical runs on a busy machine can differ ~2×): mean ± sample std over seeds; `train time` is training seconds (evaluation excluded). \
`peak memory`: max over seeds, where recorded.
- `flags` (⚠, completed and running runs): val loss < 0.8 × train loss; train loss < 0.5 × val loss while val \
stalls (< 1% better over the second half) or rises (> 2% above its best); val accuracy > 0.15 above the Fano bound \
for its loss.
- `transfer` (a study run at several model sizes or token budgets: one section per scale): per variant, its % vs \
the baseline and verdict at each scale; `sign across scales`: `kept` when Δ has one sign at every scale, else \
`flips`; `verdict across scales`: `same everywhere` or the verdict at each.
- curves: mean over completed seeds with a min–max (or ±1 std, `--band std`) band; other runs dashed, marked where \
they stopped.
"""


def columns_for(section: Section, rows: list[VariantRow] = ()) -> list[str]:
    """Column titles; the phases table names its actual baseline phase (phase 0 unless --baseline phase=N).
    Columns of `OPTIONAL_COLUMNS` follow where a row of `rows` has a value for them."""
    columns = COLUMNS if not section.phases else [c.replace("phase 0", section.baseline or "phase 0")
                                                  for c in PHASE_COLUMNS]
    return columns + optional_columns(rows)


# Shown only in sections where some row has a value for them: title -> VariantRow attribute.
OPTIONAL_COLUMNS = {"router imbalance": "router_imbalance"}


def optional_columns(rows: list[VariantRow]) -> list[str]:
    return [title for title, attr in OPTIONAL_COLUMNS.items() if any(getattr(row, attr) is not None for row in rows)]


def number(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def spread_text(spread: stats.Spread | None) -> str:
    if spread is None:
        return "–"
    if spread.n < 2:
        return f"{spread.mean:.4f} (n=1)"
    return f"{spread.mean:.4f} ± {spread.std:.4f} (n={spread.n})"


def p_text(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def power_text(comparison: stats.Comparison | None) -> str:
    if comparison is None or comparison.verdict != stats.NOISE:
        return ""
    seeds = comparison.seeds_for_power
    if seeds is None:
        return "–"
    if math.isinf(seeds):
        return f"> {stats.MAX_SEEDS:,}"
    short_of_margin = not abs(comparison.delta) >= stats.NOISE_SIGMAS * comparison.sigma
    return f"{seeds:.0f}" + ("†" if short_of_margin else "")


def compute_text(row: VariantRow) -> str:
    c = row.compute
    if c is None:
        return "–"
    text = f"{c.tokens:.2f}×" + (f" ({c.low:.2f}–{c.high:.2f})" if c.low is not None else "")
    return text + (" ext." if c.extrapolated else "")


def si(value: float | None) -> str:
    if value is None:
        return "–"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.0f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def memory(size: float | None) -> str:
    if size is None:
        return "–"
    for factor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if size >= factor:
            return f"{size / factor:.2f} {unit}"
    return f"{size:.0f} B"


def cells(row: VariantRow, phases: bool = False, optional: list[str] = ()) -> list[str]:
    """The row as display strings, in COLUMNS (or PHASE_COLUMNS) order, then the `optional` columns."""
    return _cells(row, phases) + [number(getattr(row, OPTIONAL_COLUMNS[title]), 2) for title in optional]


def _cells(row: VariantRow, phases: bool) -> list[str]:
    comparison = row.comparison
    params = f"{si(row.params_total)} / {si(row.params_non_embedding)}"
    if row.params_active is not None and row.params_total is not None and row.params_active < row.params_total:
        params += f" · active {si(row.params_active)}"
    tokens = (f"{row.tokens_per_s:,.0f}" + (f" ± {row.tokens_per_s_std:,.0f}" if row.tokens_per_s_std is not None
                                             else "")) if row.tokens_per_s is not None else "–"
    seconds = duration(row.time_s) + (f" ± {duration(row.time_s_std)}" if row.time_s_std is not None else "")
    inference = memory(row.kv_cache_bytes) + (f" · {row.decode_tokens_per_s:,.0f}/s"
                                               if row.decode_tokens_per_s is not None else "")
    flags = f"{len(row.flags)} ⚠" if row.flags else ""
    label = f"{row.label} (baseline)" if row.is_baseline else row.label
    test = comparison.test if comparison and not math.isnan(comparison.p_value) else "–"
    p_raw = p_text(comparison.p_value if comparison else None)
    p_holm = p_text(comparison.p_adjusted if comparison else None)
    if phases:
        return [label, row.components, row.change or "–", spread_text(row.final_spread),
                number(comparison.pct if comparison else None, 2, signed=True) + ("%" if comparison else ""),
                number(row.pct_vs_previous, 2, signed=True) + ("%" if row.pct_vs_previous is not None else ""),
                test, p_raw, p_holm, row.verdict, power_text(comparison), compute_text(row), params,
                inference, tokens, seconds, memory(row.peak_mem_bytes), status_text(row.statuses), flags]
    return [label, row.lr or "–", spread_text(row.final_spread), spread_text(row.best_spread),
            number(comparison.delta if comparison else None, 4, signed=True),
            number(comparison.pct if comparison else None, 2, signed=True) + ("%" if comparison else ""),
            test, p_raw, p_holm, row.verdict, power_text(comparison), compute_text(row), params,
            inference, tokens, seconds, memory(row.peak_mem_bytes), status_text(row.statuses), flags]


def section_heading(section: Section, rows: list[VariantRow]) -> str:
    runs = sum(len(r.runs) for r in rows)
    statuses = sum((r.statuses for r in rows), start=Counter())
    varies = ", ".join(section.factors) or "nothing (seeds only)"
    baseline = section.baseline or "none"
    return f"varies {varies} · baseline: {baseline} · {runs} runs: {status_text(statuses)}"


def markdown(sections: list[Section], tables: list[list[VariantRow]], header: list[str],
             extra: list[str] = ()) -> str:
    """summary.md; `extra`: more sections (e.g. transfer across scale) before the definitions."""
    lines = ["# Comparison", "", *header, ""]
    for section, rows in zip(sections, tables):
        columns, optional = columns_for(section, rows), optional_columns(rows)
        lines += [f"## {section.title}", "", section_heading(section, rows), ""]
        lines += [f"> {note}" for note in section.notes]
        if section.notes:
            lines.append("")
        lines += ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        for row in rows:
            values = [c.replace("|", "\\|") for c in cells(row, section.phases, optional)]
            if row.is_baseline:
                values[0] = f"**{values[0]}**"
            lines.append("| " + " | ".join(values) + " |")
        flagged = [(row.label, run, message) for row in rows for run, message in row.flags]
        if flagged:
            lines += ["", "Flagged runs:"]
            lines += [f"- {label} · `{run}`: {message}" for label, run, message in flagged]
        lines.append("")
    lines += [*extra, "## Definitions", "", DEFINITIONS]
    return "\n".join(lines)


CSV_FIELDS = ["section", "study", "varies", "variant", "is_baseline", "phase", "runs", "completed", "diverged",
              "failed", "running", "n", "final_val_loss_mean", "final_val_loss_std", "best_val_loss_mean",
              "best_val_loss_std", "delta_vs_baseline", "pct_vs_baseline", "pooled_sigma", "p_value_welch",
              "verdict", "pct_vs_previous_phase", "params_total", "params_non_embedding", "tokens_per_s",
              "train_time_s", "peak_mem_bytes", "seeds", "flags", "run_dirs",
              # added with paired seeds, Holm and power (older columns keep their names and meaning)
              "p_test", "p_value", "p_adjusted", "seeds_for_80pct_power", "compute_x", "compute_x_low",
              "compute_x_high", "compute_x_extrapolated", "compute_x_flops", "compute_x_time", "lr", "tokens_per_s_std",
              "train_time_s_std",
              # added with inference accounting (summary.json inference/*)
              "kv_cache_bytes", "decode_tokens_per_s", "decode_tokens_per_s_batched", "prefill_tokens_per_s",
              # added with ffn=moe: active parameters, FLOPs per token (of those), the router's final imbalance
              "params_active", "flops_per_token", "router_imbalance"]


def csv_text(sections: list[Section], tables: list[list[VariantRow]]) -> str:
    """Raw numbers (no ± or % formatting), one line per variant, for spreadsheets and scripts."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for section, rows in zip(sections, tables):
        for row in rows:
            final, best, comparison = row.final_spread, row.best_spread, row.comparison
            writer.writerow({
                "section": section.title, "study": section.study or "", "varies": " ".join(section.factors),
                "variant": row.label, "is_baseline": int(row.is_baseline),
                "phase": "" if row.phase is None else row.phase, "runs": len(row.runs),
                **{s: row.statuses.get(s, 0) for s in ("completed", "diverged", "failed", "running")},
                "n": final.n if final else 0,
                "final_val_loss_mean": _raw(final and final.mean), "final_val_loss_std": _raw(final and final.std),
                "best_val_loss_mean": _raw(best and best.mean), "best_val_loss_std": _raw(best and best.std),
                "delta_vs_baseline": _raw(comparison and comparison.delta),
                "pct_vs_baseline": _raw(comparison and comparison.pct),
                "pooled_sigma": _raw(comparison and comparison.sigma),
                "p_value_welch": _raw(comparison and comparison.p_welch), "verdict": row.verdict,
                "pct_vs_previous_phase": _raw(row.pct_vs_previous), "params_total": _raw(row.params_total),
                "params_non_embedding": _raw(row.params_non_embedding), "tokens_per_s": _raw(row.tokens_per_s),
                "train_time_s": _raw(row.time_s), "peak_mem_bytes": _raw(row.peak_mem_bytes),
                "seeds": " ".join(str(s) for s in row.seeds),
                "flags": " | ".join(f"{run}: {message}" for run, message in row.flags),
                "run_dirs": " ".join(str(r.dir) for r in row.runs),
                "p_test": comparison.test if comparison and not math.isnan(comparison.p_value) else "",
                "p_value": _raw(comparison and comparison.p_value),
                "p_adjusted": _raw(comparison and comparison.p_adjusted),
                "seeds_for_80pct_power": _power_raw(comparison),
                **_compute_raw(row),
                "lr": row.lr, "tokens_per_s_std": _raw(row.tokens_per_s_std), "train_time_s_std": _raw(row.time_s_std),
                "kv_cache_bytes": _raw(row.kv_cache_bytes), "decode_tokens_per_s": _raw(row.decode_tokens_per_s),
                "decode_tokens_per_s_batched": _raw(row.decode_tokens_per_s_batched),
                "prefill_tokens_per_s": _raw(row.prefill_tokens_per_s),
                "params_active": _raw(row.params_active), "flops_per_token": _raw(row.flops_per_token),
                "router_imbalance": _raw(row.router_imbalance),
            })
    return out.getvalue()


def _power_raw(comparison: stats.Comparison | None) -> str:
    if comparison is None or comparison.verdict != stats.NOISE or comparison.seeds_for_power is None:
        return ""
    return "inf" if math.isinf(comparison.seeds_for_power) else f"{comparison.seeds_for_power:.0f}"


def _compute_raw(row: VariantRow) -> dict[str, str]:
    c = row.compute
    if c is None:
        return {k: "" for k in ("compute_x", "compute_x_low", "compute_x_high", "compute_x_extrapolated",
                                "compute_x_flops", "compute_x_time")}
    return {"compute_x": _raw(c.tokens), "compute_x_low": _raw(c.low), "compute_x_high": _raw(c.high),
            "compute_x_extrapolated": str(int(c.extrapolated)), "compute_x_flops": _raw(c.flops),
            "compute_x_time": _raw(c.time)}


def _raw(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.10g}"
