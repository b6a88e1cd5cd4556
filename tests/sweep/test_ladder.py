"""The ladder: decisions follow the noise rule (checked against scipy on constructed losses), and a tiny ladder
runs end to end, logs its decisions, writes phase configs, and resumes without re-running anything."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from scipy import stats

from ablate.compare.stats import pooled_std
from ablate.sweep.ladder import NoiseRule, decide, main

RULE = NoiseRule(sigmas=2.0, min_seeds=2)


def test_pooled_std_formula():
    a, b = [1.0, 1.2, 1.4], [2.0, 2.5]
    expected = math.sqrt((2 * statistics.variance(a) + 1 * statistics.variance(b)) / 3)
    assert math.isclose(pooled_std(a, b), expected)


def test_clear_winner_switches_with_welch_p_value():
    losses = {"mha": [3.00, 3.01, 3.02], "mla": [2.80, 2.81, 2.82], "mqa": [3.05, 3.06, 3.04]}
    d = decide("attention", "mha", losses, RULE)
    assert (d.best, d.chosen) == ("mla", "mla") and "switch" in d.reason
    assert math.isclose(d.margin, 0.2)
    assert math.isclose(d.p_value, stats.ttest_ind(losses["mla"], losses["mha"], equal_var=False).pvalue)


def test_within_noise_keeps_current():
    # mla lower by 0.01 but seeds spread by ~0.1: margin < 2 x pooled std.
    losses = {"mha": [3.0, 3.1, 2.9], "mla": [2.99, 3.09, 2.89]}
    d = decide("attention", "mha", losses, RULE)
    assert d.best == "mla" and d.chosen == "mha"
    assert "within noise" in d.reason and d.margin < 2 * d.pooled_std


def test_single_seed_is_not_enough():
    d = decide("attention", "mha", {"mha": [3.0], "mla": [2.0]}, RULE)
    assert d.chosen == "mha" and "fewer than 2 seeds" in d.reason and d.p_value is None


def test_current_best_is_kept():
    d = decide("ffn", "relu", {"relu": [2.0, 2.1], "gelu": [2.5, 2.6]}, RULE)
    assert d.chosen == "relu" and d.margin == 0.0


def test_a_tie_is_within_noise():
    d = decide("placement", "pre", {"pre": [3.0, 3.2], "post": [3.0, 3.2]}, RULE)
    assert d.best == "post" and d.chosen == "pre" and d.margin == 0.0 and "within noise" in d.reason


def test_tiny_ladder_end_to_end_and_resume(tmp_path, capsys):
    # Constructed so the placement study is within noise for certain: without norms, a pre-norm block
    # x + f(x) and a post-norm block x + f(x) are the same computation, so pre and post tie exactly on every
    # seed while the seeds differ. The ffn study decides whatever its runs say.
    ladder_dir = tmp_path / "ladder"
    args = ["--studies", "placement,ffn", "--seeds", "0,1", "--dir", str(ladder_dir), "norm=none", "model=tiny",
            "train=smoke", "data.max_bytes=3000000", "device=cpu", "logger=none"]
    main(args)
    state = json.loads((ladder_dir / "ladder.json").read_text())
    assert [d["study"] for d in state["decisions"]] == ["placement", "ffn"]
    placement = state["decisions"][0]
    assert placement["chosen"] == "pre" and placement["margin"] == 0.0 and placement["pooled_std"] > 0
    assert "within noise" in placement["reason"] and placement["seeds"] == {"pre": 2, "post": 2}
    assert len(state["phases"]) == 3 and (ladder_dir / "phases" / "2.yaml").exists()
    for decision in state["decisions"]:  # each logged decision is what the rule gives on the runs on disk
        runs = [json.loads(p.read_text()) for p in ladder_dir.glob(f"*-{decision['study']}/*/summary.json")]
        losses = {}
        for run in runs:
            losses.setdefault(run[decision["study"]], []).append(run["final/val_loss"])
        assert {k: len(v) for k, v in losses.items()} == decision["seeds"]
        assert decide(decision["study"], decision["current"], losses, RULE).chosen == decision["chosen"]
    phase2 = (ladder_dir / "phases" / "2.yaml").read_text()
    assert "# @package _global_" in phase2 and f"override /ffn: \"{state['decisions'][1]['chosen']}\"" in phase2

    capsys.readouterr()
    main(args)  # everything decided: nothing runs again
    assert "ladder: placement" not in capsys.readouterr().out


def test_unknown_study_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit):
        main(["--studies", "nonsense", "--dir", str(tmp_path)])
