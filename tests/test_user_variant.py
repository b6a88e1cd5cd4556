"""A user's own variant, no fork (README, "Add your own variant"): a class in the user's module on PYTHONPATH plus
one YAML in the user's config dir on `hydra.searchpath` trains, joins its family's study, and appears in compare."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ablate
from ablate.config import validate
from ablate.spec import SpecError
from ablate.sweep.plan import plan

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "user_variant"
SEARCHPATH = f"hydra.searchpath=[file://{EXAMPLE / 'my_conf'}]"
TINY = ["model=tiny", "train=smoke", "data.max_bytes=3000000", "device=cpu", "logger=none"]


@pytest.fixture
def user_module_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))


def test_the_users_option_joins_its_familys_study():
    jobs = plan(["+study=ffn", SEARCHPATH])
    assert "ffn=relu2" in {job[0] for job in jobs}
    assert jobs[0][0] == "ffn=relu", "the baseline still runs first"
    assert "ffn=relu2" not in {job[0] for job in plan(["+study=ffn"])}, "only where the user's config dir is"


def test_the_users_knobs_are_typed_and_checked_by_its_class(user_module_on_path):
    spec, _ = validate(ablate.compose(["ffn=relu2", SEARCHPATH, "model=tiny"]))
    assert spec.ffn.knobs == {"hidden_mult": 4.0}
    with pytest.raises(SpecError) as error:
        validate(ablate.compose(["ffn=relu2", SEARCHPATH, "ffn.hidden_mult=-1"]))
    assert error.value.problems == ["ffn.hidden_mult=-1.0 must be > 0"]


def test_the_users_variant_trains_in_a_study_sweep_and_is_compared(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.getcwd()])}
    sweep = tmp_path / "study"
    cmd = [sys.executable, "-m", "ablate.run", "-m", "+study=ffn", "ffn=relu,relu2", SEARCHPATH, *TINY,
           f"hydra.sweep.dir={sweep}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((sweep / "sweep.json").read_text())
    assert [(r["ffn"], r["status"]) for r in rows] == [("relu", "completed"), ("relu2", "completed")]
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert manifest["studies"][0]["options"] == {"ffn": ["relu", "relu2"]}

    out = tmp_path / "report"
    compare = subprocess.run([sys.executable, "-m", "ablate.compare", str(sweep), "--out", str(out), "--no-html"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert compare.returncode == 0, compare.stderr[-3000:]
    variants = {r["variant"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert set(variants) == {"relu", "relu2"} and variants["relu2"]["study"] == "ffn"
