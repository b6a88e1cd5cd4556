"""`hydra/launcher=gpus`: a sweep's jobs in parallel processes on one node, each job pinned to one device slot
(`ablate.sweep.slots`). Hydra instantiates launchers only from the `hydra_plugins` namespace, so the class lives
here. Processes come from joblib's loky backend, as in Hydra's joblib launcher, whose per-job step it reuses."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig

from ablate.sweep.slots import SlotPool, log_job, resolve_slots

log = logging.getLogger(__name__)


def run_in_slot(pool: SlotPool, idx: int, overrides: Sequence[str], hydra_context: Any, config: DictConfig,
                task_function: Any, singleton_state: dict) -> JobReturn:
    """In a worker process: take a free place, run the job on its device, give the place back."""
    import torch
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    with pool.place() as (slot, device):
        if device == "cpu":
            torch.set_num_threads(pool.cpu_threads())
        start = time.time()
        try:
            return execute_job(idx, [*overrides, f"device={device}", f"++sweep.slot={slot}"], hydra_context,
                               config, task_function, singleton_state)
        finally:
            log_job(pool.lock_dir.parent, {"job": idx, "slot": slot, "device": device, "start": start,
                                           "end": time.time()})


class SlotLauncher(Launcher):
    def __init__(self, gpus: Any = "auto", jobs_per_gpu: int = 1) -> None:
        self.gpus, self.jobs_per_gpu = gpus, int(jobs_per_gpu)
        self.config: DictConfig | None = None
        self.task_function: Any = None
        self.hydra_context: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        """Hydra sets the launcher up before the sweep dir exists: unusable slots are refused here, in one line
        (exit 2, nothing written), as the sweeper refuses bad jobs."""
        from ablate.sweep.slots import SlotError

        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context
        try:
            self.pool()
        except SlotError as e:
            log.error("config error: %s", e)
            raise SystemExit(2) from None

    def pool(self) -> SlotPool:
        import torch

        from ablate.sweep.slots import SlotError

        if self.jobs_per_gpu < 1:
            raise SlotError(f"hydra.launcher.jobs_per_gpu={self.jobs_per_gpu} must be >= 1")
        gpus = self.gpus if isinstance(self.gpus, (str, int)) else list(self.gpus)
        slots = resolve_slots(gpus, torch.cuda.device_count() if torch.cuda.is_available() else 0)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        return SlotPool(sweep_dir / ".slots", tuple(slots), self.jobs_per_gpu)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib import Parallel, delayed

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        pool = self.pool()
        log.info("gpus launcher: %d jobs on %d slot(s) %s, %d job(s) per slot", len(job_overrides),
                 len(pool.slots), ",".join(pool.slots), pool.per_slot)
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + idx, " ".join(filter_overrides(overrides)))
        state = Singleton.get_state()
        runs = Parallel(n_jobs=min(pool.capacity, len(job_overrides)), backend="loky")(
            delayed(run_in_slot)(pool, initial_job_idx + idx, overrides, self.hydra_context, self.config,
                                 self.task_function, state)
            for idx, overrides in enumerate(job_overrides))
        return list(runs)
