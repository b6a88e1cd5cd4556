"""A Hydra sweeper for `+study=all`: the union of several studies' jobs, each a one-factor sweep defined in its
own conf/study/<name>.yaml, crossed with the command line's sweeps. Launching stays with Hydra's launcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.override_parser.types import Override
from hydra.plugins.sweeper import Sweeper
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

STUDY_DIR = Path(__file__).resolve().parents[2] / "conf" / "study"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def study_jobs(name: str) -> list[list[str]]:
    """The jobs of study `name` as override lists, each also naming its study, factor and baseline."""
    spec = OmegaConf.load(STUDY_DIR / f"{name}.yaml")
    study = spec.study
    params = spec.hydra.sweeper.params
    tags = [f"study.name={study.name}", f"study.varies={study.varies}", f"study.baseline={study.baseline}"]
    return [[f"{key}={value.strip()}", *tags] for key, values in params.items() for value in str(values).split(",")]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


class StudySweeper(Sweeper):
    """Hydra's basic sweeper with another job list. It wraps rather than subclasses BasicSweeper because Hydra's
    plugin discovery re-imports that class, which breaks `super()` calls inside it for subclasses."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None):
        super().__init__()
        self.basic = get_class(BASIC_SWEEPER)(max_batch_size=max_batch_size, params=params)
        self.basic.split_arguments = self.split_arguments  # the one step that differs
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config = config
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.basic.sweep(arguments)

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        assert self.config is not None
        cli_jobs = [job for batch in type(self.basic).split_arguments(overrides, None) for job in batch]
        jobs = []
        for name in self.config.study.include:
            for study_job in study_jobs(str(name)):
                fixed = {_key(o) for o in study_job}
                for cli_job in cli_jobs:  # a study's own choice wins over the same key given on the command line
                    jobs.append([*study_job, *(o for o in cli_job if _key(o) not in fixed)])
        size = max_batch_size or len(jobs)
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]
