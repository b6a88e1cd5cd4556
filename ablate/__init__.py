"""ablate: transformer-LM architecture ablations from Hydra config groups.

Public API (stable names):
    compose(overrides) -> DictConfig      the config `python -m ablate.run <overrides>` would run
    build_model(cfg) -> nn.Module         validated model; model(ids (B, T)) -> logits (B, T, vocab)
    train(cfg) -> dict                    one run; returns its summary
    load_run(path) -> (config, metrics rows, summary)
    load_model(path) -> nn.Module         a run's trained model (final weights, eval mode)
"""

from __future__ import annotations

import secrets
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ablate.naming import job_dirname

# The configs: `conf/` at the repo root in a source checkout (and an editable install); a wheel maps it into the
# package as `ablate/conf/` (pyproject's package-dir). Defined here so `import ablate` stays light (no torch).
_PACKAGED_CONF = Path(__file__).resolve().parent / "conf"
CONF_DIR = _PACKAGED_CONF if _PACKAGED_CONF.is_dir() else Path(__file__).resolve().parent.parent / "conf"

# conf/config.yaml names sweep job dirs with it (`${ablate_job_dir:${hydra:overrides.task}}`)
OmegaConf.register_new_resolver("ablate_job_dir", job_dirname, replace=True)
# ... and run and sweep dirs with a random suffix, so two started in the same second never share one. Cached in the
# config (as Hydra's `now` is), so every job of a sweep, in any launcher process, resolves the same sweep dir.
OmegaConf.register_new_resolver("ablate_unique", lambda: secrets.token_hex(3), use_cache=True, replace=True)

__all__ = ["compose", "build_model", "train", "load_run", "load_model", "CONF_DIR"]


def compose(overrides: list[str] | None = None) -> DictConfig:
    from ablate.config import compose as _compose

    return _compose(overrides)


def build_model(cfg: DictConfig):
    from ablate.config import validate
    from ablate.model import TransformerLM

    model_spec, _ = validate(cfg)
    return TransformerLM(model_spec)


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    from ablate.training import train as _train

    return _train(cfg, overrides)


def load_run(path):
    from ablate.track import load_run as _load_run

    return _load_run(path)


def load_model(path):
    from ablate.weights import load_model as _load_model

    return _load_model(path)
