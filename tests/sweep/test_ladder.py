"""The ladder: decisions follow the noise rule (checked against scipy on constructed losses), and a tiny ladder
runs end to end, logs its decisions, writes phase configs, and resumes without re-running anything."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from scipy import stats

from ablate.compare import stats as verdicts
from ablate.compare.group import group_runs
from ablate.compare.load import load_runs
from ablate.compare.rows import section_rows
from ablate.compare.stats import pooled_std
from ablate.sweep import ladder
from ablate.sweep.ladder import NoiseRule, decide, main, study_result
from ablate.sweep.manifest import Manifest, ManifestWarning, StudyEntry, write_manifest
from tests.compare.fake_runs import write_run

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


def test_wide_gap_that_two_seeds_cannot_confirm_keeps_the_current_choice_as_compare_says(tmp_path):
    """margin 0.3 > 2σ (0.28) but with 2 seeds a side the paired p (seed k of both saw the same batches) is
    0.37: compare says `within noise`, so the ladder must keep the current choice — one rule for both."""
    losses = {"mha": [3.0, 3.2], "mla": [2.9, 2.7]}
    sweep = tmp_path / "0-attention"
    for option, values in losses.items():
        for seed, value in enumerate(values):
            write_run(sweep / f"attention={option},seed={seed}", value, seed=seed, attention=option,
                      summary_extra={"study": "attention", "varies": "attention", "baseline": "mha"})
    margin, sigma = 0.3, pooled_std(losses["mha"], losses["mla"])
    assert margin > 2 * sigma and verdicts.welch_p(losses["mla"], losses["mha"]) >= 0.05
    # compare, from the run dirs
    (section,) = group_runs(load_runs([str(sweep)]))
    rows = {r.label: r for r in section_rows(section)}
    assert section.baseline == "mha" and rows["mla"].verdict == verdicts.NOISE
    # the ladder, from the same run dirs
    factor, current, found, _ = study_result("attention", sweep, {"attention": "mha"})
    assert (factor, current) == ("attention", "mha")
    assert {k: sorted(v.values) for k, v in found.items()} == {k: sorted(v) for k, v in losses.items()}
    d = decide("attention", current, found, RULE)
    paired = stats.ttest_rel(losses["mla"], losses["mha"]).pvalue
    assert d.best == "mla" and d.chosen == "mha" and d.test == verdicts.PAIRED
    assert d.p_value == pytest.approx(paired) and rows["mla"].comparison.p_value == pytest.approx(paired)
    assert "within noise" in d.reason and f"paired t p = {paired:.3g} (Holm {paired:.3g}) ≥ 0.05" in d.reason
    # a looser p threshold (--alpha) lets the same gap through, as it would the verdict's rule
    assert decide("attention", "mha", found, NoiseRule(2.0, 2, alpha=0.5)).chosen == "mla"
    assert verdicts.beyond_noise(-margin, sigma, d.p_value, 2.0, 0.5)
    # and the other half of the rule: many seeds make a small shift significant, but it is not beyond 2σ
    current = [3.00, 3.10, 2.90, 3.05, 2.95] * 4
    best = [v - 0.08 for v in current]
    d = decide("attention", "mha", {"mha": current, "mla": best}, RULE)
    assert d.p_value < 0.05 and d.margin < 2 * d.pooled_std and d.chosen == "mha"
    assert verdicts.compare(best, current).verdict == verdicts.NOISE


def test_the_ladder_adjusts_p_over_the_studys_challengers_as_compare_does(tmp_path):
    """Two challengers: the best one's p is Holm-adjusted over both (m = 2), in the ladder as in the report."""
    losses = {"mha": [3.00, 3.02, 3.01], "mla": [2.90, 2.93, 2.905], "gqa": [3.02, 3.00, 3.04]}
    sweep = tmp_path / "0-attention"
    for option, values in losses.items():
        for seed, value in enumerate(values):
            write_run(sweep / f"attention={option},seed={seed}", value, seed=seed, attention=option,
                      summary_extra={"study": "attention", "varies": "attention", "baseline": "mha"})
    raw = {o: stats.ttest_rel(losses[o], losses["mha"]).pvalue for o in ("mla", "gqa")}
    low, high = sorted(raw.values())
    holm = {o: (min(1, 2 * p) if p == low else max(min(1, 2 * low), p)) for o, p in raw.items()}
    _, current, found, _ = study_result("attention", sweep, {"attention": "mha"})
    d = decide("attention", current, found, RULE)
    assert d.p_value == pytest.approx(raw["mla"]) and d.p_adjusted == pytest.approx(holm["mla"])
    (section,) = group_runs(load_runs([str(sweep)]))
    rows = {r.label: r for r in section_rows(section)}
    assert rows["mla"].comparison.p_adjusted == pytest.approx(holm["mla"])
    assert rows["gqa"].comparison.p_adjusted == pytest.approx(holm["gqa"])
    assert (d.chosen == "mla") == (rows["mla"].verdict == verdicts.BETTER)


def _study_sweep(sweep, finals, factor="attention"):
    for option, values in finals.items():
        for seed, value in enumerate(values):
            write_run(sweep / f"{factor}={option},seed={seed}", value, seed=seed, **{factor: option})


def test_the_factor_and_options_come_from_the_sweeps_manifest(tmp_path, capsys):
    sweep = tmp_path / "0-mine"
    _study_sweep(sweep, {"mha": [3.0, 3.01], "gqa": [2.5, 2.51]})
    # a study with no conf/study/mine.yaml: only the manifest can say what it varied; mla never ran
    write_manifest(sweep, Manifest(studies=[StudyEntry(name="mine", varies=["attention"],
                                                       baseline={"attention": "mha"},
                                                       options={"attention": ["mha", "gqa", "mla"]})]))
    factor, current, losses, source = study_result("mine", sweep, {"attention": "mha", "ffn": "relu"})
    assert (factor, current, source) == ("attention", "mha", str(sweep / "manifest.json"))
    assert {k: sorted(v.values) for k, v in losses.items()} == {"mha": [3.0, 3.01], "gqa": [2.5, 2.51], "mla": []}
    assert decide("mine", current, losses, RULE).seeds == {"mha": 2, "gqa": 2, "mla": 0}
    # a manifest naming another baseline than the ladder's current choice is said, and the ladder's choice stays
    factor, current, _, _ = study_result("mine", sweep, {"attention": "gqa"})
    assert current == "gqa" and "names baseline attention=mha" in capsys.readouterr().out


def test_without_a_usable_manifest_the_factor_comes_from_the_study_config(tmp_path):
    sweep = tmp_path / "0-ffn"
    _study_sweep(sweep, {"relu": [3.0, 3.01], "gelu": [2.9, 2.91]}, factor="ffn")
    factor, current, losses, source = study_result("ffn", sweep, {"ffn": "relu"})
    assert (factor, current, source, sorted(losses)) == ("ffn", "relu", "conf/study/ffn.yaml", ["gelu", "relu"])
    (sweep / "manifest.json").write_text("{broken")
    with pytest.warns(ManifestWarning, match="manifest.json"):
        assert study_result("ffn", sweep, {"ffn": "relu"})[3] == "conf/study/ffn.yaml"


def test_noise_flags_reach_the_rule(tmp_path, monkeypatch):
    seen = {}

    def fake_ladder(studies, seeds, overrides, ladder_dir, rule, start, *restrict_and_reuse):
        seen["rule"] = rule
        return {"phases": [[]]}

    monkeypatch.setattr(ladder, "run_ladder", fake_ladder)
    main(["--studies", "ffn", "--sigmas", "3", "--min-seeds", "4", "--alpha", "0.01", "--dir", str(tmp_path),
          "model=tiny"])
    assert seen["rule"] == NoiseRule(sigmas=3.0, min_seeds=4, alpha=0.01)
    with pytest.raises(SystemExit):
        main(["--studies", "ffn", "--alpha", "5", "--dir", str(tmp_path)])


def test_an_option_without_a_completed_run_makes_the_exit_non_zero(tmp_path, monkeypatch):
    """Deciding on what completed is fine, but the exit code says that not everything did."""
    def fake_ladder(studies, seeds, overrides, ladder_dir, rule, start, *restrict_and_reuse):
        return {"phases": [[], []], "decisions": [{"study": "ffn", "seeds": {"relu": 2, "swiglu": 0}}]}

    monkeypatch.setattr(ladder, "run_ladder", fake_ladder)
    with pytest.raises(SystemExit, match="ffn: an option has no completed run"):
        main(["--studies", "ffn", "--dir", str(tmp_path)])


def test_tiny_ladder_end_to_end_and_resume(tmp_path, capsys):
    # Constructed so the placement study is within noise for certain: without norms, a pre-norm block
    # x + f(x) and a post-norm block x + f(x) are the same computation, so pre and post tie exactly on every
    # seed while the seeds differ. The ffn study decides whatever its runs say.
    ladder_dir = tmp_path / "ladder"
    args = ["--studies", "placement,ffn", "--seeds", "0,1", "--dir", str(ladder_dir), "--options", "ffn=gelu,swiglu",
            "norm=none", "model=tiny", "train=smoke", "data.max_bytes=3000000", "device=cpu", "logger=none"]
    main(args)
    state = json.loads((ladder_dir / "ladder.json").read_text())
    assert [d["study"] for d in state["decisions"]] == ["placement", "ffn"]
    placement = state["decisions"][0]
    assert placement["chosen"] == "pre" and placement["margin"] == 0.0 and placement["pooled_std"] > 0
    assert "within noise" in placement["reason"] and {"pre", "post"} <= set(placement["seeds"])
    assert set(placement["seeds"].values()) == {2}  # every option the placement study finds, 2 seeds each
    assert len(state["phases"]) == 3 and (ladder_dir / "phases" / "2.yaml").exists()
    # the carried-over choice (ffn=relu with placement=pre) ran in the placement study: reused, not retrained
    ffn_runs = [json.loads(p.read_text()) for p in (ladder_dir / "1-ffn").glob("*/summary.json")]
    assert ffn_runs and "relu" not in {r["ffn"] for r in ffn_runs}
    assert state["decisions"][1]["seeds"]["relu"] == 2 and "reused, not retrained" in capsys.readouterr().out
    carried = [json.loads(p.read_text()) | {"run_dir": str(p.parent)}
               for p in (ladder_dir / "0-placement").glob("*/summary.json")]
    carried = [r for r in carried if r["placement"] == placement["chosen"]]
    for decision, reused in zip(state["decisions"], ([], carried)):  # each decision is the rule's on the runs on disk
        losses = ladder.final_losses(next(ladder_dir.glob(f"*-{decision['study']}")), decision["study"], (), reused)
        assert {k: len(v.values) for k, v in losses.items()} == decision["seeds"]
        assert decide(decision["study"], decision["current"], losses, RULE).chosen == decision["chosen"]
    phase2 = (ladder_dir / "phases" / "2.yaml").read_text()
    assert "# @package _global_" in phase2 and f"override /ffn: \"{state['decisions'][1]['chosen']}\"" in phase2

    capsys.readouterr()
    main(args)  # everything decided: nothing runs again
    assert "ladder: placement" not in capsys.readouterr().out


def test_unknown_study_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit):
        main(["--studies", "nonsense", "--dir", str(tmp_path)])


def _hashed_runs(sweep, finals, choices, overrides, status="completed"):
    """Fake runs that carry the config hash the real job would record, so reuse can find them."""
    from ablate.sweep.reuse import job_hash

    for option, values in finals.items():
        for seed, value in enumerate(values):
            digest = job_hash([*(f"{k}={v}" for k, v in choices.items() if k != "ffn"), f"ffn={option}",
                               f"seed={seed}", *overrides])
            write_run(sweep / f"ffn={option},seed={seed}", value, seed=seed, ffn=option, status=status,
                      summary_extra={"config_hash": digest})


def test_the_ladder_reuses_finished_runs_restricts_options_and_refuses_empty_results(tmp_path, monkeypatch):
    import ablate

    overrides = ["model=tiny"]
    base = ablate.compose(overrides)
    start = {family: str(base[family].name) for family in ladder.FAMILIES}
    earlier = tmp_path / "earlier"  # a finished sweep of relu and swiglu at exactly the ladder's configs
    _hashed_runs(earlier, {"relu": [3.00, 3.02], "swiglu": [2.90, 2.93]}, start, overrides)
    launched = []

    def fake_study(study, index, choices, seeds, overrides_, ladder_dir, options=None):
        launched.append(options)
        sweep = ladder_dir / f"{index}-{study}"
        _hashed_runs(sweep, {o: [2.95, 2.96] for o in options}, choices, overrides_)
        return sweep

    monkeypatch.setattr(ladder, "run_study", fake_study)
    state = ladder.run_ladder(["ffn"], [0, 1], overrides, tmp_path / "ladder", RULE, start,
                              {"ffn": ["swiglu", "geglu"]}, [earlier])
    assert launched == [["geglu"]]  # relu (the current choice) and swiglu already ran: only geglu trains
    assert state["decisions"][0]["seeds"] == {"relu": 2, "swiglu": 2, "geglu": 2}  # and nothing else of ffn/

    def failing_study(study, index, choices, seeds, overrides_, ladder_dir, options=None):
        sweep = ladder_dir / f"{index}-{study}"
        _hashed_runs(sweep, {o: [math.nan, math.nan] for o in options}, choices, overrides_, status="failed")
        return sweep

    monkeypatch.setattr(ladder, "run_study", failing_study)
    with pytest.raises(SystemExit, match=r"^ladder: ffn: no completed run to decide on under .*; stopped$"):
        ladder.run_ladder(["ffn"], [0, 1], overrides, tmp_path / "empty", RULE, start, {"ffn": ["swiglu"]})
