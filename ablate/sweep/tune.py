"""Per-variant learning rate for a study (`study.tune_lr=true`), in two stages (Narang et al. 2021 and Porian et al.
2024: a variant is compared at its own tuned lr, not at one shared lr).

Stage 1 trains every variant of the study on the first seed at each lr of `study.lr_grid`, with a short budget
(`study.tune_steps`; null: a quarter of the run's own step budget). Its runs are ordinary run dirs under
`<sweep dir>/lr_tuning/`, tagged `lr_tuning: true` in summary.json, so compare keeps them out of the main table
and draws the lr-sensitivity plot from them. Stage 2 takes, per variant, the lr with the lowest final val loss (a
diverged run counts as +inf; a failed one is left out) and runs every requested seed at it with the full budget,
as the study would without tuning. Rerunning the command skips each finished run of either stage.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ablate.naming import job_dirname
from ablate.spec import REPEAT_KEYS, SpecError, key_in
from ablate.track.files import atomic_write, config_hash

log = logging.getLogger("ablate")
TUNING_DIR = "lr_tuning"  # stage 1's run dirs, under the sweep dir
CHOICES = "choices.json"  # in TUNING_DIR: each variant's chosen lr (null: none finished), read by the sweep report
TUNING_TAG = "++study.lr_tuning=true"  # summary.json's `lr_tuning` (study.* is recording-only: no hash change)
BUDGET_KEYS = ("train.max_steps", "train.max_tokens")
DEFAULT_FRACTION = 0.25  # stage 1's share of the full step budget when study.tune_steps is null


@dataclass(frozen=True)
class LrTuning:
    grid: tuple[float, ...]
    steps: int | None  # stage 1's step budget; None: DEFAULT_FRACTION of each variant's own budget


def lr_tuning(config: DictConfig) -> LrTuning | None:
    """The study's lr tuning, or None when it is off (or there is no study)."""
    study = config.get("study")
    if not study or not study.get("tune_lr"):
        return None
    grid = OmegaConf.to_container(study.get("lr_grid"), resolve=True) if study.get("lr_grid") is not None else []
    steps = study.get("tune_steps")
    return LrTuning(grid=tuple(float(lr) for lr in grid), steps=None if steps is None else int(steps))


def tuning_problems(config: DictConfig, cli_jobs: list[list[str]]) -> list[str]:
    """What makes a tuning sweep impossible, one line each naming the field and the fix."""
    study = config.get("study")
    problems = []
    if not (study.get("name") or study.get("varies")):  # `++study.tune_lr=true` alone: no variants to tune
        problems.append("study.tune_lr: there is no study to tune; add one, e.g. +study=ffn study.tune_lr=true")
    grid = study.get("lr_grid")
    if grid is None or not OmegaConf.is_list(grid) or len(grid) == 0:
        problems.append("study.lr_grid: give the learning rates to try, e.g. study.lr_grid=[1e-3,3e-3,1e-2]")
    else:
        for lr in grid:
            if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
                problems.append(f"study.lr_grid: {lr!r} is not a positive learning rate")
    steps = study.get("tune_steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        problems.append(f"study.tune_steps={steps}: give a positive number of steps, or null for a quarter "
                        "of each run's budget")
    if any(_key(o) == "train.lr" for job in cli_jobs for o in job):
        problems.append("train.lr: study.tune_lr picks each variant's lr from study.lr_grid; drop train.lr from "
                        "the command (or set study.tune_lr=false)")
    return problems


def variant_of(job: list[str]) -> tuple[str, ...]:
    """A job's variant: its overrides without the ones that only repeat it (seed, data order)."""
    return tuple(o for o in job if not key_in(_key(o), REPEAT_KEYS))


def first_seed_jobs(jobs: list[list[str]]) -> list[list[str]]:
    """One job per variant: the first one launched (the study's first seed), in launch order."""
    seen: dict[tuple[str, ...], list[str]] = {}
    for job in jobs:
        seen.setdefault(variant_of(job), job)
    return list(seen.values())


def tuning_job(job: list[str], lr: float, steps: int) -> list[str]:
    """Stage 1's job for one variant at one lr: a short budget, tagged, in its own dir under lr_tuning/."""
    kept = [o for o in job if _key(o) not in BUDGET_KEYS]  # the job's own budget gives way to stage 1's
    task = [*kept, f"train.lr={lr!r}", "train.max_tokens=null", f"train.max_steps={steps}", TUNING_TAG]
    return [*task, f"hydra.sweep.subdir='{TUNING_DIR}/{job_dirname(task)}'"]


def tuning_dir(sweep_dir: Path, job: list[str]) -> Path:
    """Where stage 1's job ran (its hydra.sweep.subdir)."""
    subdir = next(o.split("=", 1)[1] for o in job if o.startswith("hydra.sweep.subdir="))
    return sweep_dir / subdir.strip("'")


def loss_of(summary: dict[str, Any] | None) -> float | None:
    """A stage-1 run's final val loss for choosing: +inf if it diverged, None if it did not finish."""
    if not summary:
        return None
    if summary.get("status") == "diverged":
        return math.inf
    loss = summary.get("final/val_loss")
    return float(loss) if summary.get("status") == "completed" and loss is not None else None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def best_lr(losses: dict[float, float | None]) -> float | None:
    """The lr with the lowest final val loss (the smaller lr on a tie); None if no run finished finite."""
    finite = [(loss, lr) for lr, loss in losses.items() if loss is not None and math.isfinite(loss)]
    return min(finite)[1] if finite else None


def stage1_losses(sweep_dir: Path, jobs: dict[float, list[str]]) -> dict[float, float | None]:
    """One variant's stage-1 losses by lr, from its runs' records on disk."""
    return {lr: loss_of(read_summary(tuning_dir(sweep_dir, job))) for lr, job in jobs.items()}


def choose_lrs(sweep_dir: Path, stage1: dict[tuple[str, ...], dict[float, list[str]]]
               ) -> dict[tuple[str, ...], float | None]:
    """Each variant's chosen lr from stage 1's records on disk (so a rerun that skipped them chooses the same)."""
    chosen = {}
    for variant, jobs in stage1.items():
        losses = stage1_losses(sweep_dir, jobs)
        lr = chosen[variant] = best_lr(losses)
        name = " ".join(variant) or "defaults"
        if lr is None:
            log.error("lr tuning: no run of %s finished with a finite loss at any lr of study.lr_grid; its seeds "
                      "are not run (see %s)", name, sweep_dir / TUNING_DIR)
        elif len(losses) > 1 and lr in (min(losses), max(losses)):
            log.warning("lr tuning: %s is best at lr=%g, the edge of study.lr_grid; the best lr may lie beyond it "
                        "(widen the grid)", name, lr)
        else:
            log.info("lr tuning: %s -> lr=%g", name, lr)
    return chosen


def final_jobs(jobs: list[list[str]], chosen: dict[tuple[str, ...], float | None]) -> list[list[str]]:
    """Stage 2: every job of the study at its variant's chosen lr (variants with none are left out, said)."""
    return [[*job, f"train.lr={chosen[variant_of(job)]!r}"] for job in jobs
            if chosen.get(variant_of(job)) is not None]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


@dataclass
class TuningPlan:
    """Both stages of one tuning sweep: stage 1's jobs by variant and lr, and the study's own jobs for stage 2."""

    stage1: dict[tuple[str, ...], dict[float, list[str]]]
    jobs: list[list[str]]  # the study's jobs, every seed, without an lr
    identities: dict[tuple[str, ...], str] = field(default_factory=dict)  # variant -> variant_hash of its config

    @classmethod
    def of(cls, config: DictConfig, cli_jobs: list[list[str]], jobs: list[list[str]]) -> TuningPlan | None:
        """The plan when the study tunes lr (SpecError, one line per problem, if it cannot), else None."""
        tuning = lr_tuning(config)
        if tuning is None:
            return None
        problems = tuning_problems(config, cli_jobs)
        if problems:
            raise SpecError(problems)
        stage1, identities = {}, {}
        for job in first_seed_jobs(jobs):
            job_config = compose_job(config, job)
            steps = tuning.steps or max(1, round(DEFAULT_FRACTION * full_budget(job_config)))
            stage1[variant_of(job)] = {lr: tuning_job(job, lr, steps) for lr in tuning.grid}
            identities[variant_of(job)] = variant_hash(OmegaConf.to_container(job_config, resolve=True))
        return cls(stage1=stage1, jobs=jobs, identities=identities)

    def stage1_jobs(self) -> list[list[str]]:
        return [job for by_lr in self.stage1.values() for job in by_lr.values()]

    def final_jobs(self, sweep_dir: Path) -> list[list[str]]:
        """Stage 2's jobs, chosen from stage 1's records; the choices are written to lr_tuning/choices.json."""
        chosen = choose_lrs(sweep_dir, self.stage1)
        record = [{"variant": list(variant), "lr": lr, "variant_hash": self.identities.get(variant),
                   "tried": self.tried(sweep_dir, variant)} for variant, lr in chosen.items()]
        atomic_write(sweep_dir / TUNING_DIR / CHOICES, json.dumps(record, indent=2))
        return final_jobs(self.jobs, chosen)

    def tried(self, sweep_dir: Path, variant: tuple[str, ...]) -> list[dict[str, Any]]:
        """The stage-1 runs the choice was made from (the current round: compare plots these, not older ones)."""
        jobs = self.stage1[variant]
        losses = stage1_losses(sweep_dir, jobs)
        return [{"lr": lr, "run": str(tuning_dir(sweep_dir, job).relative_to(sweep_dir)),
                 "final_val_loss": losses[lr] if losses[lr] is not None and math.isfinite(losses[lr]) else None}
                for lr, job in jobs.items()]


def compose_job(config: DictConfig, job: list[str]) -> DictConfig:
    """The config one job of the sweep runs with, without the `hydra` node (as the job's own config is)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from ablate.sweep.sweeper import composition_problem

    try:
        job_config = GlobalHydra.instance().config_loader().load_sweep_config(config, list(job))
    except HydraException as e:  # an option that does not exist: the sweeper's one line, not Hydra's page
        raise SpecError([composition_problem(e)]) from None
    return OmegaConf.masked_copy(job_config, [k for k in job_config if k != "hydra"])


def full_budget(job_config: DictConfig) -> int:
    """The step budget the job would train for (its device as this machine resolves `device`)."""
    from ablate.config import train_spec
    from ablate.training.device import pick_device

    return train_spec(job_config).total_steps(pick_device(str(job_config.device)), int(job_config.model.block_size))


def variant_hash(config: dict[str, Any]) -> str:
    """What a variant computes whatever its seed and lr: the config hash with the repeat keys (seed, data order)
    and train.lr blanked. It ties a stage-2 run to the choice its sweep recorded in lr_tuning/choices.json, so
    compare can tell a run at an lr the sweep no longer chooses (the grid or budget changed since) from a current one."""
    container = copy.deepcopy(config)
    container.pop("hydra", None)
    for key in (*REPEAT_KEYS, "train.lr"):
        *parents, last = key.split(".")
        node = container
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            node[last] = None
    return config_hash(OmegaConf.create(container))


def unchosen(sweep_dir: Path) -> list[str]:
    """One line per variant of a tuning sweep whose seeds were not run, as lr_tuning/choices.json records."""
    path = sweep_dir / TUNING_DIR / CHOICES
    if not path.exists():
        return []
    return [f"{' '.join(entry['variant']) or 'defaults'}: no lr of study.lr_grid finished with a finite loss, so "
            f"its seeds were not run (stage-1 runs in {sweep_dir / TUNING_DIR})"
            for entry in json.loads(path.read_text()) if entry["lr"] is None]
