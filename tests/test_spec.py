"""Config composition and validation: every option composes; every impossible combination is one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ablate
from ablate.config import validate
from ablate.spec import SpecError


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (ablate.CONF_DIR / group).glob("*.yaml"))


ALL_OPTIONS = [(g, o) for g in ("pos_enc", "attention", "ffn", "norm", "placement", "dropout", "model", "data",
                                "tokenizer", "train", "logger") for o in _options(g)]


@pytest.mark.parametrize("group,option", ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_option_composes_and_validates(group, option):
    cfg = ablate.compose([f"{group}={option}"])
    if group in ("pos_enc", "attention", "ffn", "norm", "placement", "dropout"):
        assert cfg[group].name == option
    try:
        validate(cfg)
    except SpecError as e:  # an option may be incompatible with a default of another group; it must say so
        assert all(" with " in line or "cannot" in line for line in e.problems), e.problems


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["attention=gqa", "attention.n_kv_heads=3"],
         "attention.n_kv_heads=3 must divide model.n_heads=8; use one of [1, 2, 4, 8]"),
        (["model.n_heads=6"], "model.d_model=256 must be divisible by model.n_heads=6"),
        (["pos_enc=rope", "model.d_model=24", "model.n_heads=8"], "pos_enc=rope needs an even head dim"),
        (["dropout.p=1.5"], "dropout.p=1.5 must be in [0, 1)"),
        (["train.lr=0"], "train.lr=0.0 must be > 0"),
        (["train.warmup_fraction=1.0"], "train.warmup_fraction=1.0 must be in [0, 1)"),
        (["train.max_steps=-5"], "train.max_steps=-5 must be > 0 (or null)"),
        (["model.n_layers=0"], "model.n_layers=0 must be a positive integer"),
        (["+ffn.width=3"], "ffn.width is not a knob of ffn=relu; its knobs are: hidden_mult"),
        (["norm.eps=0"], "norm.eps=0 must be > 0"),
        (["device=tpu"], "device=tpu is not one of"),
        (["data.val_fraction=0"], "data.val_fraction=0 must be between 0 and 1"),
    ],
)
def test_rejections_are_one_clear_line(overrides, message):
    with pytest.raises(SpecError) as info:
        validate(ablate.compose(overrides))
    assert len(info.value.problems) == 1
    assert message in info.value.problems[0]


def test_several_problems_each_get_a_line():
    with pytest.raises(SpecError) as info:
        validate(ablate.compose(["train.lr=0", "dropout.p=2"]))
    assert len(info.value.problems) == 2


def test_unknown_option_gets_hydras_listing():
    result = subprocess.run([sys.executable, "-m", "ablate.run", "attention=nope", "--cfg", "job"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "Could not find 'attention/nope'" in result.stderr and "mqa" in result.stderr


def test_cfg_job_shows_composed_config():
    result = subprocess.run([sys.executable, "-m", "ablate.run", "attention=gqa", "pos_enc=rope", "--cfg", "job"],
                            capture_output=True, text=True, check=True)
    assert "n_kv_heads: 2" in result.stdout and "name: rope" in result.stdout


def test_cli_rejects_bad_config_before_training(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ablate.run", "model=tiny", "attention=gqa", "attention.n_kv_heads=3",
         "logger=none", f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "attention.n_kv_heads=3 must divide model.n_heads=4" in result.stdout + result.stderr
    assert not (tmp_path / "run").exists()  # not even Hydra's .hydra/ and log: a refused config leaves nothing
    assert tmp_path.is_dir()  # ... but the folder the user named it under stays
