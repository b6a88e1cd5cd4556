"""manifest.json: written and read back, tolerant of damage, found above a run dir, and used by compare for runs
that carry no study info (an ad-hoc sweep is compared against the first option it was given)."""

from __future__ import annotations

import json
import stat

import pytest

from ablate.compare import build_report
from ablate.compare.group import group_runs
from ablate.compare.load import load_runs
from ablate.compare.rows import section_rows
from ablate.sweep.manifest import (
    Manifest,
    ManifestWarning,
    StudyEntry,
    adhoc_manifest,
    find_manifest,
    read_manifest,
    write_manifest,
)
from tests.compare.fake_runs import write_run

JOBS = [["attention=gqa", "pos_enc=rope", "seed=0"], ["attention=mla", "pos_enc=rope", "seed=0"]]


def sections_of(*inputs, baselines=None):
    return {s.title: s for s in group_runs(load_runs([str(i) for i in inputs]), baselines)}


def adhoc_sweep(root, finals=None, manifest=True):
    """`python -m ablate.run -m attention=gqa,mla,mqa pos_enc=rope seed=0,1,2` as run dirs without study info."""
    finals = finals or {"gqa": [4.00, 4.01, 4.02], "mla": [3.80, 3.81, 3.79], "mqa": [4.10, 4.12, 4.09]}
    jobs = []
    for option, values in finals.items():
        for seed, value in enumerate(values):
            job = [f"attention={option}", "pos_enc=rope", f"seed={seed}"]
            write_run(root / f"{len(jobs)}_{','.join(job)}", value, seed=seed, attention=option, pos_enc="rope")
            jobs.append(job)
    if manifest:
        write_manifest(root, adhoc_manifest({"attention": list(finals), "seed": ["0", "1", "2"]}, [0, 1, 2],
                                            ["pos_enc=rope"], jobs))
    return root


def test_round_trip_and_format(tmp_path):
    manifest = Manifest(studies=[StudyEntry(name="attention", varies=["attention"], baseline={"attention": "mha"},
                                            options={"attention": ["mha", "gqa"]})],
                        seeds=[0, 1], fixed=["model=tiny"], jobs=JOBS)
    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / "manifest.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert read_manifest(tmp_path) == manifest == read_manifest(path)
    data = json.loads(path.read_text())
    assert list(data) == ["version", "studies", "seeds", "fixed", "jobs"] and data["version"] == 1
    assert data["studies"] == [{"name": "attention", "varies": ["attention"], "baseline": {"attention": "mha"},
                                "options": {"attention": ["mha", "gqa"]}}]
    assert data["jobs"] == JOBS
    assert not list(tmp_path.glob(".manifest.json.*"))  # written through a temp file, renamed


def test_adhoc_manifest_varies_what_has_several_values_and_takes_the_first_as_baseline():
    m = adhoc_manifest({"attention": ["gqa", "mla", "mqa"], "ffn": ["swiglu", "relu"], "pos_enc": ["rope"],
                        "seed": ["0", "1"], "+data.seed": ["1", "2"]}, [0, 1], ["pos_enc=rope"], JOBS)
    (entry,) = m.studies
    assert entry.name is None and entry.varies == ["attention", "ffn"]
    assert entry.baseline == {"attention": "gqa", "ffn": "swiglu"}
    assert entry.options == {"attention": ["gqa", "mla", "mqa"], "ffn": ["swiglu", "relu"]}
    assert (m.seeds, m.fixed, m.jobs) == ([0, 1], ["pos_enc=rope"], JOBS)


def test_a_missing_manifest_is_none_without_a_warning(tmp_path, recwarn):
    assert read_manifest(tmp_path) is None
    assert not [w for w in recwarn if issubclass(w.category, ManifestWarning)]


@pytest.mark.parametrize("text", ["{not json", "[]", '{"version": 99}', '{"studies": [{"varies": ["a"], '
                                  '"baseline": ["x"]}]}', '{"seeds": ["zero"]}', "\xff\xfe"])
def test_a_corrupt_manifest_warns_naming_the_file_and_is_ignored(tmp_path, text):
    path = tmp_path / "manifest.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.warns(ManifestWarning, match=str(path)):
        assert read_manifest(tmp_path) is None


def test_find_manifest_takes_the_nearest_up_to_the_root(tmp_path):
    run = tmp_path / "multirun" / "sweep" / "group" / "0_attention=gqa"
    run.mkdir(parents=True)
    assert find_manifest(run, tmp_path) is None
    write_manifest(tmp_path / "multirun", Manifest())
    assert find_manifest(run, tmp_path) == tmp_path / "multirun" / "manifest.json"
    assert find_manifest(run, tmp_path / "multirun" / "sweep") is None  # not above the root
    assert find_manifest(run, run) is None  # a run dir given itself: only its parent is its sweep
    write_manifest(run.parent, Manifest())
    assert find_manifest(run, tmp_path) == run.parent / "manifest.json"  # the nearest wins
    assert find_manifest(run, run) == run.parent / "manifest.json"


def test_adhoc_sweep_is_compared_against_the_first_option_given(tmp_path):
    sweep = adhoc_sweep(tmp_path / "sweep")
    sections = sections_of(sweep)
    assert list(sections) == ["attention"]
    section = sections["attention"]
    assert section.baseline == "gqa" and sorted(section.variants) == ["gqa", "mla", "mqa"]
    assert ("baseline gqa: the first option of the sweep (manifest.json); choose another with "
            "--baseline attention=<option>") in section.notes
    assert any(str(sweep / "manifest.json") in note for note in section.notes)
    rows = {r.label: r for r in section_rows(section)}
    assert rows["gqa"].is_baseline and rows["mla"].verdict == "better" and rows["mqa"].verdict == "worse"
    # runs that carry study info keep it, manifest or not: their study names their baseline
    for option, value in (("relu", 4.0), ("gelu", 3.9)):
        write_run(sweep / "ffn-study" / option, value, ffn=option,
                  summary_extra={"study": "ffn", "varies": "ffn", "baseline": "gelu"})
    sections = sections_of(sweep)
    assert sections["ffn"].baseline == "gelu" and not any("manifest" in n for n in sections["ffn"].notes)
    assert sections["attention"].baseline == "gqa"
    # without the manifest the ad-hoc runs have no baseline: the attention study's mha is not among them
    (sweep / "manifest.json").unlink()
    assert sections_of(sweep)["attention"].baseline is None


def test_baseline_flag_wins_over_the_manifest(tmp_path):
    sweep = adhoc_sweep(tmp_path / "sweep")
    section = sections_of(sweep, baselines={"attention": "mqa"})["attention"]
    assert section.baseline == "mqa"
    assert "baseline mqa: from --baseline (the sweep's manifest.json says gqa)" in section.notes


def test_run_dirs_given_one_by_one_find_their_sweeps_manifest(tmp_path):
    sweep = adhoc_sweep(tmp_path / "sweep")
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert sections_of(*runs)["attention"].baseline == "gqa"


def test_the_report_says_where_the_baseline_came_from(tmp_path):
    sweep = adhoc_sweep(tmp_path / "sweep")
    build_report([str(sweep)], tmp_path / "out", html=False, png=False)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| **gqa (baseline)** |" in summary
    assert "baseline gqa: the first option of the sweep (manifest.json)" in summary


def test_a_corrupt_manifest_leaves_the_report_as_without_one(tmp_path):
    sweep = adhoc_sweep(tmp_path / "sweep", manifest=False)
    write_run(sweep / "extra", 3.5, attention="mha", pos_enc="rope")  # mha present: the configs' guess works
    (sweep / "manifest.json").write_text('{"studies": 3}')
    with pytest.warns(ManifestWarning, match="manifest.json") as caught:
        sections = sections_of(sweep)
    assert len([w for w in caught if issubclass(w.category, ManifestWarning)]) == 1  # read (and said) once
    assert sections["attention"].baseline == "mha"
    assert any("found by comparing the configs" in note for note in sections["attention"].notes)


def test_adhoc_grid_is_split_around_the_first_options(tmp_path):
    """attention=gqa,mla × ffn=swiglu,relu: the reference is (gqa, swiglu), the first options given — not
    DESIGN's relu, though runs have it."""
    jobs = []
    for attention in ("gqa", "mla"):
        for ffn in ("swiglu", "relu"):
            for seed in range(2):
                value = 4.0 - 0.2 * (attention == "mla") - 0.1 * (ffn == "relu") + 0.01 * seed
                write_run(tmp_path / f"{len(jobs)}", value, seed=seed, attention=attention, ffn=ffn)
                jobs.append([f"attention={attention}", f"ffn={ffn}", f"seed={seed}"])
    write_manifest(tmp_path, adhoc_manifest({"attention": ["gqa", "mla"], "ffn": ["swiglu", "relu"],
                                             "seed": ["0", "1"]}, [0, 1], [], jobs))
    sections = sections_of(tmp_path)
    assert set(sections) == {"attention", "ffn", "combinations"}
    assert sections["attention"].baseline == "gqa" and sorted(sections["attention"].variants) == ["gqa", "mla"]
    assert sections["ffn"].baseline == "swiglu" and sorted(sections["ffn"].variants) == ["relu", "swiglu"]
    assert sections["combinations"].baseline == "attention=gqa, ffn=swiglu"
    assert any("baseline swiglu: the first option of the sweep" in n for n in sections["ffn"].notes)



def test_a_swept_number_matches_however_it_was_typed(tmp_path):
    """`train.lr=3e-3,1e-3`: the configs say 0.003 and 0.001; the first option given is still the baseline."""
    jobs = []
    for lr in ("0.003", "0.001"):
        for seed in range(2):
            run = write_run(tmp_path / f"{len(jobs)}", 4.0 - (lr == "0.001") * 0.1 + 0.01 * seed, seed=seed)
            (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("lr: 0.003", f"lr: {lr}"))
            jobs.append([f"train.lr={lr}", f"seed={seed}"])
    write_manifest(tmp_path, adhoc_manifest({"train.lr": ["3e-3", "1e-3"], "seed": ["0", "1"]}, [0, 1], [], jobs))
    section = sections_of(tmp_path)["train.lr"]
    assert section.baseline == "train.lr=0.003"
    assert "baseline 3e-3: the first option of the sweep (manifest.json); choose another with " \
           "--baseline train.lr=<option>" in section.notes
    assert sections_of(tmp_path, baselines={"train.lr": "1E-3"})["train.lr"].baseline == "train.lr=0.001"
