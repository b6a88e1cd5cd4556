"""ablate's sweeper, the default for every multirun (`conf/hydra/sweeper/study.yaml`). Hydra instantiates sweepers
only from the `hydra_plugins` namespace, so the class lives here; what it decides is in `ablate.sweep.sweeper`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.types import Override
from hydra.plugins.sweeper import Sweeper
from hydra.utils import get_class
from omegaconf import DictConfig

from ablate.spec import SpecError
from ablate.sweep.manifest import Manifest, write_manifest
from ablate.sweep.sweeper import plan_jobs, refuse_bad_jobs
from ablate.sweep.tune import TuningPlan
from ablate.track.wandb_logger import resolve_mode

log = logging.getLogger("ablate")
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


class StudySweeper(Sweeper):
    """Hydra's basic sweeper with another job list, every job validated first, and manifest.json written before
    the first job. It wraps rather than subclasses BasicSweeper because Hydra's plugin discovery re-imports that
    class, which breaks `super()` calls inside it for subclasses."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None):
        super().__init__()
        self.basic = get_class(BASIC_SWEEPER)(max_batch_size=max_batch_size, params=params)
        self.basic.split_arguments = self.split_arguments  # the one step that differs
        self.config: DictConfig | None = None
        self.manifest: Manifest | None = None
        self.hydra_context: Any = None  # set when Hydra launches (not when `ablate.sweep.plan` only lists jobs)
        self.tuning: TuningPlan | None = None  # study.tune_lr: stage 1 is what Hydra launches, stage 2 follows

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        returns = self.basic.sweep(arguments)
        if self.tuning is None:
            return returns
        assert self.config is not None and self.manifest is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        final = self.tuning.final_jobs(sweep_dir)  # each variant at the lr its stage-1 runs chose
        self.manifest.jobs = [*self.tuning.stage1_jobs(), *final]
        write_manifest(sweep_dir, self.manifest)
        if final:
            results = self.basic.launcher.launch(final, initial_job_idx=len(self.tuning.stage1_jobs()))
            for result in results:
                _ = result.return_value  # as the basic sweeper does: a job's exception surfaces here
            returns.append(results)
        return returns

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        assert self.config is not None
        cli_jobs = [job for batch in type(self.basic).split_arguments(overrides, None) for job in batch]
        jobs, self.manifest = plan_jobs(self.config, overrides, cli_jobs)
        try:
            self.tuning = TuningPlan.of(self.config, cli_jobs, jobs)
        except SpecError as e:
            if self.hydra_context is None:  # `ablate.sweep.plan` says it
                raise
            for line in e.problems:
                log.error("config error: %s", line)
            raise SystemExit(2) from None
        if self.tuning is not None:  # Hydra launches stage 1; `sweep` launches stage 2 once it has chosen
            jobs = self.manifest.jobs = self.tuning.stage1_jobs()
        if self.hydra_context is not None:
            refuse_bad_jobs(self.hydra_context.config_loader, self.config, jobs)
            write_manifest(Path(self.config.hydra.sweep.dir), self.manifest)
            if self.config.logger.name == "wandb":  # W&B reachability: decided once here, inherited by every job
                resolve_mode(str(self.config.logger.mode))
        size = max_batch_size or len(jobs) or 1
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]
