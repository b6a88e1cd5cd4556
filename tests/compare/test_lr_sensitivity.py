"""The lr-sensitivity plot of a study.tune_lr sweep, from stage-1 run records: one line per variant, in the colour
the rest of the report gives that variant."""

from __future__ import annotations

import yaml

from ablate.compare.charts import BASELINE_COLOUR, variant_colours
from ablate.compare.group import group_runs
from ablate.compare.load import load_runs
from ablate.compare.lr_sensitivity import html_block, png, sensitivities, split_tuning
from tests.compare.fake_runs import write_run

STUDY = {"study": "ffn", "varies": "ffn", "baseline": "relu"}


def _with_lr(run_dir, lr):
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["train"]["lr"] = lr
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))


def test_the_lr_plot_draws_each_variant_in_the_colour_the_report_gives_it(tmp_path):
    sweep = tmp_path / "sweep"
    for ffn, final in (("relu", 3.0), ("swiglu", 2.9), ("geglu", 2.95)):
        for lr, worse in ((1e-3, 0.2), (1e-2, 0.0)):
            _with_lr(write_run(sweep / "lr_tuning" / f"{ffn}-{lr:g}", final + worse, ffn=ffn,
                               summary_extra={**STUDY, "lr_tuning": True}), lr)
        for seed in (0, 1):
            _with_lr(write_run(sweep / f"{ffn}-{seed}", final, seed=seed, ffn=ffn, summary_extra=STUDY), 1e-2)
    runs, tuning, superseded = split_tuning(load_runs([str(sweep)]))
    assert len(runs) == 6 and len(tuning) == 6 and superseded == []
    [sensitivity] = sensitivities(tuning)
    assert {variant: sensitivity.chosen(variant) for variant in sensitivity.losses} == dict.fromkeys(
        ("relu", "swiglu", "geglu"), 1e-2)
    [section] = group_runs(runs)
    assert sensitivity.colours == variant_colours(section) and sensitivity.colours["relu"] == BASELINE_COLOUR
    page = html_block([sensitivity])
    assert all(f'"color":"{colour}"' in page for colour in sensitivity.colours.values())
    assert png(sensitivity, tmp_path / "lr.png").stat().st_size > 10_000
