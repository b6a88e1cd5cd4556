"""Paired seeds in the report: seed k of two variants is a pair when both drew the same batches (same seed, same
data order); compare then uses the paired t-test, and says which test decided each row."""

from __future__ import annotations

import pytest
import yaml
from scipy import stats as scipy_stats

from ablate.compare import stats
from ablate.compare.group import group_runs
from ablate.compare.load import load_runs
from ablate.compare.rows import section_rows
from tests.compare.fake_runs import write_run

STUDY = {"study": "ffn", "varies": "ffn", "baseline": "relu"}
FINALS = {"relu": [4.00, 4.10, 3.95], "swiglu": [3.97, 4.06, 3.93]}


def _write(root, finals, order_of=lambda option, seed: "seed"):
    for option, values in finals.items():
        for seed, value in enumerate(values):
            run_dir = write_run(root / f"ffn={option},seed={seed}", value, seed=seed, ffn=option,
                                summary_extra=STUDY)
            order = order_of(option, seed)
            if order is not None:  # None: a run recorded before data.order existed
                config = yaml.safe_load((run_dir / "config.yaml").read_text())
                config["data"]["order"] = order
                (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (section,) = group_runs(load_runs([str(root)]))
    return section, {r.label: r for r in section_rows(section)}


def test_same_seed_same_order_is_a_pair_and_the_paired_test_decides(tmp_path):
    section, rows = _write(tmp_path, FINALS)
    swiglu = rows["swiglu"].comparison
    assert swiglu.test == stats.PAIRED and swiglu.pairs == 3
    assert swiglu.p_value == pytest.approx(scipy_stats.ttest_rel(FINALS["swiglu"], FINALS["relu"]).pvalue, rel=1e-12)
    assert swiglu.p_welch == pytest.approx(
        scipy_stats.ttest_ind(FINALS["swiglu"], FINALS["relu"], equal_var=False).pvalue, rel=1e-12)


def test_another_data_order_on_one_side_is_no_pair(tmp_path):
    section, rows = _write(tmp_path, FINALS, lambda option, seed: "fixed" if option == "relu" else "seed")
    assert sorted(section.variants) == ["relu", "swiglu"]
    swiglu = rows["swiglu"].comparison
    assert swiglu.test == stats.WELCH
    assert swiglu.p_value == pytest.approx(
        scipy_stats.ttest_ind(FINALS["swiglu"], FINALS["relu"], equal_var=False).pvalue, rel=1e-12)


def test_runs_recorded_before_data_order_group_and_pair_with_fixed_order_runs(tmp_path):
    old_or_fixed = lambda option, seed: None if seed == 0 else "fixed"  # noqa: E731
    section, rows = _write(tmp_path, FINALS, old_or_fixed)
    assert sorted(section.variants) == ["relu", "swiglu"] and rows["relu"].final_spread.n == 3
    assert rows["swiglu"].comparison.test == stats.PAIRED
