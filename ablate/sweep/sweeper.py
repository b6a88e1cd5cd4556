"""A Hydra sweeper for `+study=all`: the union of several studies' jobs, each a one-factor sweep defined in its
own conf/study/<name>.yaml, crossed with the command line's sweeps. Launching stays with Hydra's launcher."""

from __future__ import annotations

from pathlib import Path
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

STUDY_DIR = Path(__file__).resolve().parents[2] / "conf" / "study"


def study_jobs(name: str) -> list[list[str]]:
    """The jobs of study `name` as override lists, each also naming its study, factor and baseline."""
    spec = OmegaConf.load(STUDY_DIR / f"{name}.yaml")
    study = spec.study
    params = spec.hydra.sweeper.params
    tags = [f"study.name={study.name}", f"study.varies={study.varies}", f"study.baseline={study.baseline}"]
    return [[f"{key}={value.strip()}", *tags] for key, values in params.items() for value in str(values).split(",")]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


class StudySweeper(BasicSweeper):
    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        assert self.config is not None
        cli_jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
        study_job_lists = [job for name in self.config.study.include for job in study_jobs(str(name))]
        jobs = []
        for study_job in study_job_lists:
            fixed = {_key(o) for o in study_job}
            for cli_job in cli_jobs:  # a study's own choice wins over the same key given on the command line
                jobs.append([*study_job, *(o for o in cli_job if _key(o) not in fixed)])
        size = max_batch_size or len(jobs)
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]

