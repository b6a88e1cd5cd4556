"""Finding runs, the factor they vary, their baseline and their seeds."""

from __future__ import annotations

import json
import shutil

import pytest

from ablate import spec
from ablate.compare import group, keys
from ablate.compare.group import flatten, group_runs, identity, varied_keys
from ablate.compare.load import find_run_dirs, load_runs
from tests.compare.fake_runs import attention_study, write_run


def sections_of(*inputs, baselines=None):
    runs = load_runs([str(i) for i in inputs])
    return {s.title: s for s in group_runs(runs, baselines)}, runs


def test_study_info_names_the_section_and_baseline(tmp_path):
    sections, _ = sections_of(attention_study(tmp_path / "sweep"))
    section = sections["attention"]
    assert section.study == "attention" and section.factors == ["attention"]
    assert section.baseline == "mha"
    assert {k: len(v) for k, v in section.variants.items()} == {"mha": 3, "gqa": 3, "mqa": 4}


def test_without_study_info_the_varied_factor_is_inferred(tmp_path):
    sections, _ = sections_of(attention_study(tmp_path / "sweep", study_info=False))
    assert list(sections) == ["attention"]
    section = sections["attention"]
    assert section.study is None and section.baseline == "mha"  # DESIGN's baseline
    # gqa's own knob (n_kv_heads) is implied by its name, and seeds / debug.nan_at_step never split variants
    assert sorted(section.variants) == ["gqa", "mha", "mqa"]
    assert any("no study info" in note for note in section.notes)


def test_one_factor_at_a_time_runs_split_into_studies_sharing_the_baseline(tmp_path):
    write_run(tmp_path / "base", 4.0)
    write_run(tmp_path / "gqa", 3.9, attention="gqa")
    write_run(tmp_path / "swiglu", 3.8, ffn="swiglu")
    write_run(tmp_path / "rmsnorm", 3.95, norm="rmsnorm")
    write_run(tmp_path / "combo", 3.7, ffn="swiglu", pos_enc="rope")
    sections, _ = sections_of(tmp_path)
    assert set(sections) == {"attention", "ffn", "norm", "combinations"}
    assert sorted(sections["ffn"].variants) == ["relu", "swiglu"] and sections["ffn"].baseline == "relu"
    assert sorted(sections["norm"].variants) == ["layernorm", "rmsnorm"]
    combos = sections["combinations"]
    # labels name the factors in DESIGN order (pos_enc first)
    assert sorted(combos.variants) == ["pos_enc=learned, ffn=relu", "pos_enc=rope, ffn=swiglu"]
    assert combos.baseline == "pos_enc=learned, ffn=relu"


def test_knob_counts_when_it_differs_within_one_option(tmp_path):
    write_run(tmp_path / "a", 4.0, attention="gqa")
    run = write_run(tmp_path / "b", 3.9, attention="gqa")
    config = (run / "config.yaml").read_text().replace("n_kv_heads: 2", "n_kv_heads: 1")
    (run / "config.yaml").write_text(config)
    runs = load_runs([str(tmp_path)])

    assert varied_keys([identity(r) for r in runs]) == ["attention.n_kv_heads"]


@pytest.mark.parametrize("stated", ["gqa", "attention=gqa,ffn=relu", ["attention=gqa"], {"attention": "gqa"}])
def test_baseline_flag_and_study_baseline_forms(tmp_path, stated):
    for option, value in (("mha", 4.0), ("gqa", 3.9)):
        write_run(tmp_path / option, value, attention=option,
                  summary_extra={"study": "attention", "varies": "attention", "baseline": stated})
    sections, _ = sections_of(tmp_path)
    assert sections["attention"].baseline == "gqa"  # the study's own statement wins over DESIGN's mha
    sections, _ = sections_of(tmp_path, baselines={"attention": "mha"})
    assert sections["attention"].baseline == "mha"  # and --baseline wins over both


def test_missing_baseline_is_said_not_guessed(tmp_path):
    write_run(tmp_path / "gqa", 3.9, attention="gqa")
    write_run(tmp_path / "mqa", 3.95, attention="mqa")
    sections, _ = sections_of(tmp_path, baselines={"attention": "mha"})
    section = sections["attention"]
    assert section.baseline is None
    assert any("not among the runs" in note and "--baseline" in note for note in section.notes)


def test_phases_are_ordered_and_compared_to_the_stated_phase(tmp_path):
    ladder = [({}, 4.8434), ({"attention": "mla"}, 4.70), ({"attention": "mla", "pos_enc": "rope"}, 4.60)]
    for phase, (choices, loss) in reversed(list(enumerate(ladder))):
        write_run(tmp_path / f"p{phase}", loss, **choices,
                  summary_extra={"study": "phases", "varies": "phase", "baseline": 0, "phase": phase})
    sections, _ = sections_of(tmp_path)
    section = sections["phases"]
    assert section.phases and list(section.variants) == ["phase 0", "phase 1", "phase 2"]
    assert section.baseline == "phase 0"
    assert sections_of(tmp_path, baselines={"phase": "1"})[0]["phases"].baseline == "phase 1"


def test_study_all_shares_each_baseline_run_between_studies(tmp_path):
    """study=all runs a baseline job once, filed under one study (and phase 0 is the same computation again):
    every study still gets its baseline, and a repeated computation counts once."""
    pos_enc = {"study": "pos_enc", "varies": "pos_enc", "baseline": "learned"}
    for seed in range(2):
        write_run(tmp_path / f"base{seed}", 4.0 + 0.01 * seed, seed=seed, summary_extra=pos_enc)
        write_run(tmp_path / f"rope{seed}", 3.9 + 0.01 * seed, seed=seed, pos_enc="rope", summary_extra=pos_enc)
        write_run(tmp_path / f"gqa{seed}", 3.8 + 0.01 * seed, seed=seed, attention="gqa",
                  summary_extra={"study": "attention", "varies": "attention", "baseline": "mha"})
        write_run(tmp_path / f"p0_{seed}", 4.0 + 0.01 * seed, seed=seed,
                  summary_extra={"study": "phases", "varies": "phase", "baseline": 0, "phase": 0})
    # a baseline under other settings (another lr) must not be borrowed
    lr = write_run(tmp_path / "other_lr", 4.5, summary_extra=pos_enc)
    (lr / "config.yaml").write_text((lr / "config.yaml").read_text().replace("lr: 0.003", "lr: 0.001"))
    sections, _ = sections_of(tmp_path)
    attention = sections["attention"]
    assert attention.baseline == "mha"
    # base0/base1 and p0_0/p0_1 are the same two computations: 2 baseline seeds, not 4
    assert sorted(r.seed for r in attention.variants["mha"]) == [0, 1]
    assert any("filed under another study" in note for note in attention.notes)
    assert any("counted once" in note for note in attention.notes)
    assert "other_lr" not in {r.name for runs in attention.variants.values() for r in runs}


def test_inputs_dirs_globs_and_reruns(tmp_path):
    sweep = attention_study(tmp_path / "sweep")
    (sweep / "0_attention=mha,seed=0" / "checkpoints").mkdir()
    (sweep / "0_attention=mha,seed=0" / "checkpoints" / "summary.json").write_text(json.dumps({"status": "x"}))
    (tmp_path / "sweep" / "summary.json.bak").write_text("{}")
    assert len(find_run_dirs([str(sweep)])) == 10
    assert len(find_run_dirs([str(sweep / "*mqa*")])) == 4
    assert len(find_run_dirs([str(tmp_path / "**" / "summary.json")])) == 10
    # the same job re-run elsewhere after failing (same config hash): counted once, the completed copy kept
    copy = tmp_path / "rerun" / "0_attention=mha,seed=0"
    shutil.copytree(sweep / "0_attention=mha,seed=0", copy)
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "status": "failed"}))
    sections, runs = sections_of(sweep, tmp_path / "rerun")
    assert len(runs) == 11
    mha = sections["attention"].variants["mha"]
    assert len(mha) == 3 and all(r.status == "completed" for r in mha)
    assert any("counted once" in note for note in sections["attention"].notes)


def test_component_classes_in_the_config_do_not_split_variants(tmp_path):
    """Configs now name each option's class (`attention._target_`); run dirs recorded before do not. The same
    computation must group the same either way, and a mixture of both must not split a variant."""
    for option in ("mha", "gqa"):
        for seed in range(2):
            write_run(tmp_path / "new" / f"{option}{seed}", 4.0 + 0.01 * seed, seed=seed, attention=option,
                      targets=True)
            write_run(tmp_path / "old" / f"{option}{seed}", 4.0 + 0.01 * seed, seed=seed, attention=option)
    new, _ = sections_of(tmp_path / "new")
    old, _ = sections_of(tmp_path / "old")
    assert "attention._target_" in flatten(load_runs([str(tmp_path / "new" / "gqa0")])[0].config)
    assert list(new) == list(old) == ["attention"]
    assert {k: len(v) for k, v in new["attention"].variants.items()} == {"mha": 2, "gqa": 2}
    assert new["attention"].baseline == old["attention"].baseline == "mha"
    mixed, runs = sections_of(tmp_path / "new", tmp_path / "old")
    # one variant per option: the old and new records of a job are one computation (same hash), counted once
    assert {k: len(v) for k, v in mixed["attention"].variants.items()} == {"mha": 2, "gqa": 2}
    assert sum("counted once" in note for note in mixed["attention"].notes) == 4
    assert len({tuple(sorted(identity(r).items())) for r in runs if r.name == "gqa0"}) == 1


def test_ignored_keys_are_the_spec_names():
    from ablate.spec import RECORDING_ONLY, REPEAT_KEYS

    assert keys.IGNORED == RECORDING_ONLY + REPEAT_KEYS
    assert group.FAMILIES is spec.FAMILIES
    assert all(keys.ignored(k) for k in ("seed", "data.seed", "logger.mode", "study.name", "attention._target_",
                                         "data.cache_dir"))
    assert not any(keys.ignored(k) for k in ("data.seeds", "attention.name", "attention.n_kv_heads", "train.lr"))


def test_default_baselines_are_read_from_the_study_configs(tmp_path, monkeypatch):
    assert keys.study_baselines() == {"pos_enc": "learned", "attention": "mha", "ffn": "relu",
                                      "norm": "layernorm", "placement": "pre", "dropout": "on",
                                      "optim": "adamw"}
    # a study config that names another baseline moves it (no second list to keep in step)
    conf = tmp_path / "conf"
    (conf / "study").mkdir(parents=True)
    (conf / "study" / "attention.yaml").write_text("# @package _global_\nstudy:\n  name: attention\n"
                                                   "  varies: attention\n  baseline: gqa\n")
    monkeypatch.setattr(keys, "CONF_DIR", conf)
    keys.study_baselines.cache_clear()
    try:
        write_run(tmp_path / "runs" / "mha", 4.0)
        write_run(tmp_path / "runs" / "gqa", 3.9, attention="gqa")
        sections, _ = sections_of(tmp_path / "runs")
        assert keys.study_baselines() == {"attention": "gqa"}
        assert sections["attention"].baseline == "gqa"
    finally:
        monkeypatch.undo()
        keys.study_baselines.cache_clear()
