"""A study run at two model sizes: one section per size, and a transfer table that says whether each effect keeps
its sign and verdict."""

from __future__ import annotations

import yaml

from ablate.compare import build_report
from tests.compare.fake_runs import write_run

STUDY = {"study": "ffn", "varies": "ffn", "baseline": "relu"}
FINALS = {  # swiglu helps at tiny, hurts at small; gelu is noise at both
    "tiny": {"relu": [4.00, 4.02, 4.01], "swiglu": [3.80, 3.81, 3.79], "gelu": [4.00, 4.03, 4.01]},
    "small": {"relu": [3.50, 3.51, 3.52], "swiglu": [3.70, 3.71, 3.69], "gelu": [3.51, 3.50, 3.53]},
}


def write_sizes(root):
    for size, finals in FINALS.items():
        for option, values in finals.items():
            for seed, value in enumerate(values):
                run_dir = write_run(root / f"{size}-{option}-{seed}", value, seed=seed, ffn=option,
                                    summary_extra=STUDY)
                config = yaml.safe_load((run_dir / "config.yaml").read_text())
                config["model"] = {**config["model"], "name": size, "d_model": 64 if size == "tiny" else 128}
                (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def test_a_study_at_two_sizes_gets_a_section_per_size_and_a_transfer_table(tmp_path):
    report = build_report([str(write_sizes(tmp_path / "runs"))], tmp_path / "out", png=False)
    assert [s.title for s in report.sections] == ["ffn @ model=small", "ffn @ model=tiny"]
    assert all(sorted(s.variants) == ["gelu", "relu", "swiglu"] and s.baseline == "relu" for s in report.sections)
    text = (report.out / "summary.md").read_text()
    assert "## transfer: ffn" in text
    swiglu = next(line for line in text.splitlines() if line.startswith("| swiglu |") and "scale" not in line
                  and ("flips" in line or "kept" in line))
    assert "(worse)" in swiglu and "(better)" in swiglu and "| flips |" in swiglu
    assert "differs: model=small: worse, model=tiny: better" in swiglu
    gelu = next(line for line in text.splitlines() if line.startswith("| gelu |") and "same everywhere" in line)
    assert "within noise" in gelu
    assert "transfer: ffn</h2>" in (report.out / "report.html").read_text()


def test_a_study_at_one_size_has_no_transfer_section(tmp_path):
    root = tmp_path / "runs"
    for option, values in FINALS["tiny"].items():
        for seed, value in enumerate(values):
            write_run(root / f"{option}-{seed}", value, seed=seed, ffn=option, summary_extra=STUDY)
    report = build_report([str(root)], tmp_path / "out", png=False, html=False)
    assert [s.title for s in report.sections] == ["ffn"] and "## transfer" not in (report.out / "summary.md").read_text()
