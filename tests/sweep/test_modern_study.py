"""+study=modern: a study of named variants (any knob, one at a time on phase 5) — its jobs, their validation, the
manifest's record of each variant, compare's section, and a tiny real sweep."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import ablate
from ablate.compare.group import group_runs
from ablate.compare.load import load_runs
from ablate.config import validate
from ablate.sweep.manifest import Manifest, write_manifest, read_manifest
from ablate.sweep.plan import plan
from ablate.sweep.sweeper import load_study, study_jobs
from tests.compare.fake_runs import write_run
from tests.sweep.test_studies import ENV, PHASES, TINY

MODERN = load_study("modern").study
VARIANTS = ["p5", "qk_norm", "gate", "value_residual", "z_loss", "softcap", "local_global", "nope_every_4th", "dyt",
            "sandwich"]


def _variant(job: list[str]) -> str:
    return next(o.split("=", 1)[1] for o in job if o.startswith("++study.variant="))


def test_the_plan_is_each_variant_times_seeds_baseline_first():
    jobs = plan(["+study=modern", "model=small", "seed=0,1,2"])
    assert len(jobs) == len(VARIANTS) * 3
    assert [_variant(job) for job in jobs[::3]] == VARIANTS
    by_variant = {_variant(job): job for job in jobs}
    assert by_variant["dyt"][:6] == ["pos_enc=rope", "attention=mla", "ffn=swiglu", "norm=dyt", "placement=post",
                                     "dropout=off"]  # the variant's own choice replaces the base's
    assert "model.z_loss=1e-4" in by_variant["z_loss"] and "model.z_loss=1e-4" not in by_variant["p5"]


def test_the_base_is_phase_5():
    base = ablate.compose([*MODERN.base])
    assert {family: base[family].name for family in PHASES[5]} == PHASES[5]


def test_every_variant_validates_at_model_small_and_changes_one_thing():
    specs = {}
    for job in plan(["+study=modern", "model=small"]):
        specs[_variant(job)] = validate(ablate.compose(job))[0]
    baseline = specs.pop("p5")
    for name, spec in specs.items():
        changed = [f for f in vars(spec) if getattr(spec, f) != getattr(baseline, f)]
        assert len(changed) == 1, (name, changed)


def test_the_command_line_picks_variants_and_an_unknown_one_is_named():
    jobs = plan(["+study=modern", "study.variant=p5,dyt"])
    assert [_variant(job) for job in jobs] == ["p5", "dyt"] and "norm=dyt" in jobs[1]
    with pytest.raises(ValueError, match="study.variant=rmsnorm: study modern has no variant rmsnorm; choose from p5"):
        plan(["+study=modern", "study.variant=rmsnorm"])


def test_the_manifest_records_what_each_variant_is(tmp_path):
    jobs, entries = study_jobs(MODERN, [["seed=0"]])
    entry, = entries
    assert entry.varies == ["variant"] and entry.baseline == {"variant": "p5"}
    assert entry.options == {"variant": VARIANTS}
    assert entry.variants["dyt"] == ["norm=dyt"] and entry.variants["p5"] == []
    write_manifest(tmp_path, Manifest(studies=entries, seeds=[0], jobs=jobs))
    assert read_manifest(tmp_path).studies[0].variants == entry.variants
    _, family = study_jobs(load_study("norm").study, [["seed=0"]])
    assert "variants" not in json.loads(Manifest(studies=family).to_json())["studies"][0]


def test_compare_labels_each_variant_by_name_against_the_baseline(tmp_path):
    info = {"study": "modern", "varies": "variant", "baseline": "p5"}
    finals = {"p5": (4.00, {}), "dyt": (3.90, {"norm": "dyt"}), "z_loss": (4.01, {})}
    for name, (final, choices) in finals.items():
        for seed in (0, 1):
            write_run(tmp_path / f"{name}-{seed}", final + 0.001 * seed, seed=seed,
                      summary_extra={**info, "variant": name}, **choices)
    section, = group_runs(load_runs([str(tmp_path)]))
    assert section.title == "modern" and section.factors == ["variant"] and section.baseline == "p5"
    assert {k: len(v) for k, v in section.variants.items()} == {"p5": 2, "dyt": 2, "z_loss": 2}
    flagged, = group_runs(load_runs([str(tmp_path)]), {"variant": "dyt"})
    assert flagged.baseline == "dyt"


def test_knobs_are_variants_and_sizes_are_scales_in_the_report(tmp_path):
    """Variants that differ in model.* knobs stay one section; the same study at two model sizes is one section per
    size, each labelled by variant name."""
    import yaml

    from ablate.compare import build_report

    info = {"study": "modern", "varies": "variant", "baseline": "p5"}
    knobs = {"p5": {}, "z_loss": {"z_loss": 0.0001}, "softcap": {"logit_softcap": 30.0}}
    for size in ("tiny", "small"):
        for name, knob in knobs.items():
            for seed in (0, 1):
                final = 4.0 - 0.01 * len(name) + 0.001 * seed + (size == "small")
                run_dir = write_run(tmp_path / "runs" / f"{size}-{name}-{seed}", final, seed=seed,
                                    summary_extra={**info, "variant": name})
                config = yaml.safe_load((run_dir / "config.yaml").read_text())
                config["model"].update(name=size, **knob)
                (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        if size == "tiny":
            one = build_report([str(tmp_path / "runs")], tmp_path / "one", png=False, html=False)
            assert [s.title for s in one.sections] == ["modern"]
    report = build_report([str(tmp_path / "runs")], tmp_path / "two", png=False, html=False)
    assert [s.title for s in report.sections] == ["modern @ model=small", "modern @ model=tiny"]
    assert all(sorted(s.variants) == ["p5", "softcap", "z_loss"] and s.baseline == "p5" for s in report.sections)


def test_a_tiny_modern_study_runs_and_compares(tmp_path):
    cmd = [sys.executable, "-m", "ablate.run", "-m", "+study=modern", "study.variant=p5,softcap,dyt", *TINY,
           f"hydra.sweep.dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert sorted(r["variant"] for r in rows) == ["dyt", "p5", "softcap"]
    assert all(r["status"] == "completed" and r["study"] == "modern" and r["baseline"] == "p5" for r in rows)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["studies"][0]["variants"] == {"p5": [], "softcap": ["model.logit_softcap=30"],
                                                  "dyt": ["norm=dyt"]}
    section, = group_runs(load_runs([str(tmp_path)]))
    assert section.title == "modern" and section.baseline == "p5" and sorted(section.variants) == ["dyt", "p5",
                                                                                                   "softcap"]
