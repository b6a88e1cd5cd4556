"""A multi-section sweep on disk (attention study with a diverged seed, phases, runs without study info, a
failed run) and its report, built once per session for the output and browser tests."""

from __future__ import annotations

import pytest

from ablate.compare import Options, build_report
from tests.compare.fake_runs import attention_study, write_run


def write_mixed_sweep(root):
    attention_study(root / "attention")
    for phase, choices in enumerate([{}, {"attention": "mla"}, {"attention": "mla", "pos_enc": "rope"}]):
        for seed in range(2):
            write_run(root / "phases" / f"{phase}_{seed}", 4.8 - 0.2 * phase + 0.01 * seed, seed=seed,
                      summary_extra={"study": "phases", "phase": phase}, **choices)
    # no study info: the varied factor (ffn) is inferred; one job failed early (after the step-0 eval)
    write_run(root / "ffn" / "relu", 4.0)
    write_run(root / "ffn" / "swiglu", 3.9, ffn="swiglu")
    write_run(root / "ffn" / "gelu", 3.95, ffn="gelu", status="failed", steps=5)
    return root


@pytest.fixture(scope="session")
def mixed_sweep(tmp_path_factory):
    return write_mixed_sweep(tmp_path_factory.mktemp("mixed") / "sweep")


@pytest.fixture(scope="session")
def mixed_report(mixed_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report([str(mixed_sweep)], out, Options(smooth=0.5))
