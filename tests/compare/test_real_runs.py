"""Compatibility with run dirs the real trainer writes: two tiny CPU runs of the attention study, compared."""

from __future__ import annotations

import csv

import ablate
from ablate.compare import Options, build_report


def test_compare_two_real_tiny_runs(tmp_path, tiny_overrides):
    for name, attention in (("a", "mha"), ("b", "mqa")):
        overrides = [*tiny_overrides, "train.steps_by_device.cpu=10", "+study=attention", f"attention={attention}"]
        ablate.train(ablate.compose([*overrides, f"out_dir={tmp_path / 'runs' / name}"]), overrides)
    report = build_report([str(tmp_path / "runs")], tmp_path / "out", Options(axes=("step", "time")))

    (section,) = report.sections
    assert section.study == "attention"  # from summary.json, as +study= writes it
    assert section.factors == ["attention"] and section.baseline == "mha"
    rows = {r.label: r for r in report.tables[0]}
    assert set(rows) == {"mha", "mqa"}
    assert rows["mqa"].verdict == "single seed — not conclusive"
    assert rows["mqa"].params_total < rows["mha"].params_total  # one shared K/V head
    assert all(r.statuses == {"completed": 1} and r.tokens_per_s > 0 and r.time_s > 0 for r in rows.values())
    csv_rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert {r["variant"] for r in csv_rows} == {"mha", "mqa"}
    assert all(float(r["final_val_loss_mean"]) > 0 for r in csv_rows)
    names = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert names == ["attention_cost.png", "attention_final.png", "attention_step.png", "attention_time.png"]
    assert rows["mqa"].kv_cache_bytes < rows["mha"].kv_cache_bytes  # each run's own cache, from summary.json
    assert "<0.001" not in (tmp_path / "out" / "summary.md").read_text()  # no p-value from single runs
