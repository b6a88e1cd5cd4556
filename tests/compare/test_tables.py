"""Table rows (statistics, cost, status counts, flags), summary.md and summary.csv, the phases table."""

from __future__ import annotations

import csv
import io
import re
import json

import numpy as np
import pytest
from scipy import stats as stats_scipy

from ablate.compare import stats
from ablate.compare.flags import fano_max_accuracy, run_flags
from ablate.compare.group import group_runs
from ablate.compare.load import load_runs, read_run
from ablate.compare.rows import section_rows
from ablate.compare.tables import csv_text, markdown
from tests.compare.fake_runs import attention_study, write_run


def tables_of(root, baselines=None):
    runs = load_runs([str(root)])
    sections = group_runs(runs, baselines)
    return sections, [section_rows(s) for s in sections]


@pytest.fixture
def attention(tmp_path):
    return tables_of(attention_study(tmp_path / "sweep"))


def test_rows_sorted_by_mean_final_loss_with_verdicts(attention):
    _, (rows,) = attention
    assert [r.label for r in rows] == ["gqa", "mha", "mqa"]
    gqa, mha, mqa = rows
    assert mha.is_baseline and mha.verdict == stats.BASELINE
    assert gqa.verdict == stats.BETTER
    assert gqa.final_spread.mean == pytest.approx(3.80) and gqa.final_spread.n == 3
    assert gqa.comparison.pct == pytest.approx(100 * (3.80 - 4.01) / 4.01)
    # the diverged mqa seed is counted in the status column but not in the statistics
    assert mqa.statuses == {"completed": 3, "diverged": 1}
    assert mqa.final_spread.n == 3 and mqa.verdict == stats.NOISE
    assert mha.params_total == 106816 and mha.tokens_per_s == pytest.approx(512 / 0.05, rel=0.3)


def test_markdown_has_every_column_and_the_verdicts(attention):
    sections, tables = attention
    text = markdown(sections, tables, ["10 runs"])
    assert "## attention" in text
    assert ("| variant | lr | final val loss | best val loss | Δ vs baseline | % vs baseline | test | p | p (Holm) | "
            "verdict | seeds for 80% power | compute × |") in text
    assert "| **mha (baseline)** | 0.003 | 4.0100 ± 0.0100 (n=3) |" in text
    gqa_line = next(line for line in text.splitlines() if line.startswith("| gqa "))
    # seed k of every variant is a pair (same seed, same data order): the paired test, Holm over gqa and mqa
    assert "| -0.2100 | -5.24% | paired t | <0.001 | 0.002 | better |  | " in gqa_line
    # gqa ends below anything the mha curve reached: its compute multiplier is extrapolated, with an interval
    assert re.search(r"\| \d+\.\d\d× \(\d+\.\d\d–\d+\.\d\d\) ext\. \| 107k / 86.3k \|", gqa_line)
    assert "effective compute: gqa ≈ " in text
    # speed columns are marked machine-dependent and show their spread over seeds (0.05, 0.06, 0.07 s per step)
    assert "| tokens/s (machine) | train time (machine) |" in text
    per_seed = [512 / (0.05 + 0.01 * seed) for seed in range(3)]
    assert f"| {np.mean(per_seed):,.0f} ± {np.std(per_seed, ddof=1):,.0f} | 6.0 s ± 1.0 s |" in gqa_line
    assert "AND p (Holm) < 0.05" in text and "scipy.stats.ttest_rel" in text
    assert "3 completed, 1 diverged" in text
    assert "pooled std" in text  # σ is defined where the verdict is used


def test_csv_holds_raw_numbers(attention):
    sections, tables = attention
    rows = list(csv.DictReader(io.StringIO(csv_text(sections, tables))))
    assert [r["variant"] for r in rows] == ["gqa", "mha", "mqa"]
    gqa = rows[0]
    assert float(gqa["final_val_loss_mean"]) == pytest.approx(3.80)
    assert float(gqa["pct_vs_baseline"]) == pytest.approx(-5.2369, abs=1e-3)
    assert float(gqa["p_value_welch"]) < 0.001 and gqa["verdict"] == "better"
    assert list(rows[0])[:30] == ["section", "study", "varies", "variant", "is_baseline", "phase", "runs",
                                  "completed", "diverged", "failed", "running", "n", "final_val_loss_mean",
                                  "final_val_loss_std", "best_val_loss_mean", "best_val_loss_std",
                                  "delta_vs_baseline", "pct_vs_baseline", "pooled_sigma", "p_value_welch", "verdict",
                                  "pct_vs_previous_phase", "params_total", "params_non_embedding", "tokens_per_s",
                                  "train_time_s", "peak_mem_bytes", "seeds", "flags", "run_dirs"]  # kept, in order
    finals = {"mha": [4.00, 4.02, 4.01], "gqa": [3.80, 3.81, 3.79], "mqa": [4.00, 4.05, 3.98]}
    welch = stats_scipy.ttest_ind(finals["gqa"], finals["mha"], equal_var=False).pvalue
    paired = {o: stats_scipy.ttest_rel(finals[o], finals["mha"]).pvalue for o in ("gqa", "mqa")}
    assert float(gqa["p_value_welch"]) == pytest.approx(welch)  # Welch's even where the paired test decides
    assert gqa["p_test"] == "paired t" and float(gqa["p_value"]) == pytest.approx(paired["gqa"])
    assert float(gqa["p_adjusted"]) == pytest.approx(min(1, 2 * paired["gqa"]))
    assert gqa["seeds_for_80pct_power"] == "" and rows[1]["p_adjusted"] == ""
    mqa = rows[2]
    assert float(mqa["p_adjusted"]) == pytest.approx(max(paired["mqa"], min(1, 2 * paired["gqa"])))
    assert mqa["verdict"] == "within noise" and mqa["seeds_for_80pct_power"] != ""
    assert float(gqa["compute_x_low"]) <= float(gqa["compute_x"]) <= float(gqa["compute_x_high"])
    assert gqa["compute_x_extrapolated"] == "1" and float(gqa["compute_x_flops"]) == pytest.approx(
        float(gqa["compute_x"]))  # same FLOPs per token on both sides
    assert rows[1]["compute_x"] == rows[1]["compute_x_low"] == ""  # the baseline has none
    assert rows[1]["is_baseline"] == "1" and rows[1]["delta_vs_baseline"] == ""
    assert (rows[2]["completed"], rows[2]["diverged"], rows[2]["n"]) == ("3", "1", "3")
    assert gqa["params_total"] == "106816" and gqa["seeds"] == "0 1 2"


def test_single_seed_study_reports_the_original_numbers(tmp_path):
    write_run(tmp_path / "mha", 4.8434)
    write_run(tmp_path / "mla", 4.4283, attention="mla")
    (_,), (rows,) = tables_of(tmp_path)
    mla = rows[0]
    assert mla.label == "mla" and round(mla.comparison.pct, 2) == -8.57
    assert mla.verdict == "single seed — not conclusive"
    assert "| -8.57% |" in markdown(*tables_of(tmp_path), [])


def test_phases_table_shows_cumulative_change(tmp_path):
    ladder = [({}, [4.8434, 4.8534]), ({"attention": "mla"}, [4.70, 4.71]),
              ({"attention": "mla", "pos_enc": "rope"}, [4.4283, 4.4383])]
    for phase, (choices, losses) in enumerate(ladder):
        for seed, loss in enumerate(losses):
            write_run(tmp_path / f"p{phase}s{seed}", loss, seed=seed,
                      summary_extra={"study": "phases", "phase": phase}, **choices)
    sections, tables = tables_of(tmp_path)
    rows = tables[0]
    assert [r.label for r in rows] == ["phase 0", "phase 1", "phase 2"]  # phase order, not loss order
    assert rows[2].comparison.pct == pytest.approx(100 * (4.4333 - 4.8484) / 4.8484)
    assert rows[2].pct_vs_previous == pytest.approx(100 * (4.4333 - 4.705) / 4.705)
    assert rows[1].change == "attention: mha → mla" and rows[2].change == "pos_enc: learned → rope"
    assert rows[2].components == "rope + mla + relu + layernorm + pre + dropout on"
    text = markdown(sections, tables, [])
    assert "% vs phase 0 (cumulative)" in text and "-8.56%" in text


def test_peak_memory_shown_where_recorded(tmp_path):
    write_run(tmp_path / "a", 4.0, summary_extra={"perf/peak_mem_bytes": 3 * 2**30})
    write_run(tmp_path / "b", 3.9, attention="gqa")
    sections, tables = tables_of(tmp_path)
    text = markdown(sections, tables, [])
    assert "3.00 GiB" in text
    assert next(r for r in tables[0] if r.label == "gqa").peak_mem_bytes is None


def test_suspicious_runs_are_flagged(tmp_path):
    fine = read_run(write_run(tmp_path / "fine", 3.8))
    assert run_flags(fine) == []
    leaky = read_run(write_run(tmp_path / "leaky", 2.0, train_offset=1.5))
    assert any("val loss far below train" in f for f in run_flags(leaky))
    # train loss far below a val loss that stopped improving early (fast decay, then flat)
    overfit = read_run(write_run(tmp_path / "overfit", 3.0, train_offset=-2.2, tau=5.0))
    assert any("overfitting" in f for f in run_flags(overfit))
    still_learning = read_run(write_run(tmp_path / "learning", 3.0, train_offset=-2.2, tau=50.0))
    assert not any("overfitting" in f for f in run_flags(still_learning))
    # byte vocab: at loss 3.8 nats a calibrated model cannot be right ~60% of the time
    bound = fano_max_accuracy(3.8, 256)
    assert 0.3 < bound < 0.6
    implausible = read_run(write_run(tmp_path / "acc", 3.8, val_acc=bound + 0.3))
    assert any("implausible" in f for f in run_flags(implausible))
    # a barely trained model (what the real trainer logs at step 0: loss 5.48, acc 0.127) is not flagged
    barely = read_run(write_run(tmp_path / "barely", 5.45, val_acc=0.13, train_offset=0.0))
    assert run_flags(barely) == []


def test_fano_bound_edges():
    assert fano_max_accuracy(0.0, 256) == pytest.approx(1.0, abs=1e-9)
    assert fano_max_accuracy(10.0, 256) == pytest.approx(1 / 256)


def test_flags_reach_the_tables(tmp_path):
    write_run(tmp_path / "mha", 4.0)
    write_run(tmp_path / "gqa", 2.0, attention="gqa", train_offset=1.5)
    sections, tables = tables_of(tmp_path)
    text = markdown(sections, tables, [])
    assert "Flagged runs:" in text and "- gqa · `gqa`: val loss far below train" in text
    row = next(r for r in csv.DictReader(io.StringIO(csv_text(sections, tables))) if r["variant"] == "gqa")
    assert row["flags"].startswith("gqa: val loss far below train")


def test_running_and_failed_runs(tmp_path):
    write_run(tmp_path / "mha", 4.0)
    write_run(tmp_path / "gqa", 3.9, attention="gqa", status="running")
    failed = write_run(tmp_path / "mqa", 3.9, attention="mqa", status="failed")
    summary = json.loads((failed / "summary.json").read_text())
    (failed / "summary.json").write_text(json.dumps({**summary, "error": "RuntimeError: boom"}))
    (_,), (rows,) = tables_of(tmp_path)
    by_label = {r.label: r for r in rows}
    assert by_label["gqa"].verdict == stats.NO_RESULT and by_label["mqa"].verdict == "all failed"
    assert any("still running" in message for _, message in by_label["gqa"].flags)
    assert rows[0].label == "mha"  # variants without a result sort last


def test_the_definitions_explain_every_column():
    from ablate.compare.tables import COLUMNS, DEFINITIONS

    for column in COLUMNS:
        head = re.split(r" \(| vs ", column)[0]
        assert f"`{head}`" in DEFINITIONS, column


def test_a_mixture_of_experts_shows_active_parameters_and_its_router_imbalance(tmp_path):
    """A section with ffn=moe runs: the params cell says `active`, summary.csv has params_active, flops_per_token and
    router_imbalance, and the `router imbalance` column (mean over seeds of the last logged train/ffn/imbalance)
    appears there only; a section without it keeps its columns."""
    for seed, (final, imbalance) in enumerate([(4.0, 1.5), (4.02, 1.25)]):
        write_run(tmp_path / "ffn" / f"relu{seed}", 4.1 + seed / 100, seed=seed, ffn="relu")
        moe = write_run(tmp_path / "ffn" / f"moe{seed}", final, seed=seed, ffn="moe",
                        summary_extra={"params/active": 73024, "params/total": 109888, "flops_per_token": 511872})
        with (moe / "metrics.jsonl").open("a") as rows:
            rows.write(json.dumps({"step": 100, "train/loss": 4.1, "train/ffn/imbalance": 2.0}) + "\n")
            rows.write(json.dumps({"step": 100, "train/loss": 4.1, "train/ffn/imbalance": imbalance}) + "\n")
    sections, tables = tables_of(tmp_path / "ffn")
    text = markdown(sections, tables, [])
    assert "| runs | flags | router imbalance |" in text
    moe_line = next(line for line in text.splitlines() if line.startswith("| moe "))
    relu_line = next(line for line in text.splitlines() if line.startswith("| **relu"))
    assert "| 110k / 86.3k · active 73k |" in moe_line and moe_line.endswith("| 1.38 |")
    assert "| 107k / 86.3k |" in relu_line and relu_line.endswith("| – |")  # dense: total = active, none logged
    moe_csv = next(r for r in csv.DictReader(io.StringIO(csv_text(sections, tables))) if r["variant"] == "moe")
    assert (moe_csv["params_active"], moe_csv["flops_per_token"]) == ("73024", "511872")
    assert float(moe_csv["router_imbalance"]) == pytest.approx(1.375)
    dense_only = tables_of(attention_study(tmp_path / "attention"))
    assert "router imbalance |" not in markdown(*dense_only, []).split("## Definitions")[0]


def test_the_definitions_explain_the_optional_columns():
    from ablate.compare.tables import DEFINITIONS, OPTIONAL_COLUMNS

    for column in OPTIONAL_COLUMNS:
        assert f"`{column}`" in DEFINITIONS, column
