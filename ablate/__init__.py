"""ablate: transformer-LM architecture ablations from Hydra config groups.

Public API (stable names):
    compose(overrides) -> DictConfig      the config `python -m ablate.run <overrides>` would run
    build_model(cfg) -> nn.Module         validated model; model(ids (B, T)) -> logits (B, T, vocab)
    train(cfg) -> dict                    one run; returns its summary
    load_run(path) -> (config, metrics rows, summary)
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

__all__ = ["compose", "build_model", "train", "load_run", "CONF_DIR"]


def compose(overrides: list[str] | None = None) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []))


def build_model(cfg: DictConfig):
    from ablate.model import TransformerLM
    from ablate.spec import validate

    model_spec, _ = validate(cfg)
    return TransformerLM(model_spec)


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    from ablate.training import train as _train

    return _train(cfg, overrides)


def load_run(path):
    from ablate.track import load_run as _load_run

    return _load_run(path)
