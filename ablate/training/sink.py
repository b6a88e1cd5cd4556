"""The one metrics sink: every row goes to the run directory first (metrics.jsonl, the record) and to the W&B
mirror second, in one `log(row)` call; texts likewise (sample.txt)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from ablate.config import choices
from ablate.naming import run_name
from ablate.spec import FAMILIES, TARGET_KEY
from ablate.track import RunFiles, make_logger
from ablate.training.summary import study_info


def wandb_config(cfg: DictConfig) -> dict[str, Any]:
    """The config for W&B: each group's choice as a top-level string key (dashboards can "group by attention"),
    the choices' knobs under `knobs`, everything else as it is."""
    container = OmegaConf.to_container(cfg, resolve=True)
    knobs = {family: {k: v for k, v in container.pop(family).items() if k not in ("name", TARGET_KEY)}
             for family in FAMILIES}
    return {**container, **choices(cfg), "knobs": knobs}


def logger_settings(cfg: DictConfig) -> dict[str, Any]:
    """The logger config, with a study's identity as W&B group / job_type / tags unless set explicitly."""
    settings = OmegaConf.to_container(cfg.logger, resolve=True)
    info = study_info(cfg)
    if info.get("study"):
        settings["group"] = settings.get("group") or f"study-{info['study']}"
        settings["job_type"] = settings.get("job_type") or str(info["study"])
        identity = (f"{k}:{info[k]}" for k in ("study", "varies", "baseline", "phase") if info.get(k) is not None)
        settings["tags"] = [*settings.get("tags", []), *identity]
    return settings


class MetricsSink:
    def __init__(self, files: RunFiles, mirror):
        self.files, self.mirror = files, mirror

    @classmethod
    def open(cls, files: RunFiles, cfg: DictConfig, overrides: list[str], wandb_id: str | None,
             concurrent: bool = False) -> MetricsSink:
        """The run dir plus the logger `cfg.logger` asks for (W&B, resuming run `wandb_id` if given, or none).
        `concurrent`: other runs of this process stay open meanwhile (the members of an ensemble)."""
        name = cfg.logger.get("run_name") or run_name(overrides)
        return cls(files, make_logger(logger_settings(cfg), str(files.dir), name, wandb_config(cfg), run_id=wandb_id,
                                      concurrent=concurrent))

    @property
    def run_id(self) -> str | None:
        """The W&B run's id (None without W&B)."""
        return self.mirror.run_id

    def log(self, row: dict[str, Any]) -> None:
        self.files.log(row)
        self.mirror.log(row)

    def text(self, name: str, text: str) -> None:
        """<run dir>/<name>.txt, and the W&B key `name`."""
        self.files.write_text(f"{name}.txt", text)
        self.mirror.log_text(name, text)

    def finish(self, summary: dict[str, Any], exit_code: int = 0) -> None:
        self.mirror.finish(summary, exit_code=exit_code)
