"""`python -m ablate.run [overrides]` (one run) or `python -m ablate.run -m a=x,y ...` (a sweep)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from ablate import CONF_DIR
from ablate.extras import missing_extras
from ablate.spec import SpecError

log = logging.getLogger("ablate")


def main() -> None:
    """`python -m ablate.run` and `ablate-run`: a launcher or sweeper from an extra that is not installed is named,
    with its pip line, before Hydra composes anything."""
    problems = missing_extras(sys.argv[1:])
    rank = torchrun_rank()
    if rank is not None and {"-m", "--multirun"} & set(sys.argv[1:]):
        problems.append("-m under torchrun: torchrun trains one run in several processes, not a sweep; run a sweep's "
                        "jobs with hydra/launcher=gpus (one GPU each) or hydra/launcher=slurm_ddp (several each)")
    for line in problems if not rank else ():
        print(f"config error: {line}", file=sys.stderr)
    if problems:
        sys.exit(2)
    if rank:  # Hydra writes nothing for the other processes: they run rank 0's job in rank 0's run dir
        sys.argv += FOLLOWER_HYDRA
    run()


# Hydra settings of torchrun's processes other than rank 0: no job dir of their own (the working dir, which
# exists), no .hydra/ and no log file.
FOLLOWER_HYDRA = ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout"]


def torchrun_rank() -> int | None:
    """This process's rank when torchrun started several (None otherwise); read before torch is imported."""
    return int(os.environ.get("RANK", 0)) if int(os.environ.get("WORLD_SIZE", 1)) > 1 else None


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def run(cfg: DictConfig) -> float | None:
    from ablate.training import train  # here: a refused extra is reported without importing torch
    from ablate.training.distributed import is_main

    hydra_cfg = HydraConfig.get()
    if not is_main():  # one voice per run: the others warn on the console, never into rank 0's job log
        quiet_follower()
    with open_dict(cfg):
        cfg.out_dir = hydra_cfg.runtime.output_dir
        if cfg.logger.name == "wandb" and cfg.logger.group is None and hydra_cfg.mode == RunMode.MULTIRUN:
            cfg.logger.group = hydra_cfg.sweep.dir.rstrip("/").split("/", 1)[-1].replace("/", "_")
    # A failed job is recorded in its run dir; a sweep goes on with the next job unless sweep.fail_fast is set.
    # SystemExit is not an Exception, so Hydra's launcher does not catch it: that is what stops a fail-fast sweep.
    keep_going = hydra_cfg.mode == RunMode.MULTIRUN and not cfg.sweep.fail_fast
    try:
        if hydra_cfg.mode == RunMode.RUN and (cfg.get("study") or {}).get("tune_lr"):
            raise SpecError(["study.tune_lr: tuning is a sweep (each option at each lr, then every seed at the best); "
                             "add -m, e.g. python -m ablate.run -m +study=ffn study.tune_lr=true"])
        summary = train(cfg, list(hydra_cfg.overrides.task))
    except SpecError as e:
        for line in e.problems:
            log.error("config error: %s", line)
        default_dir = not any(o.startswith("hydra.run.dir=") for o in hydra_cfg.overrides.hydra)
        if is_main():  # (another process's out_dir is not its own)
            discard_hydra_only_dir(Path(cfg.out_dir), with_parents=default_dir and hydra_cfg.mode == RunMode.RUN)
        if not keep_going:
            sys.exit(2)
        return None
    except Exception as e:
        log.error("run failed: %s: %s (details in %s/error.txt)", type(e).__name__, e, cfg.out_dir)
        if not keep_going:
            sys.exit(1)
        return None
    log.info("%s: %s, final val loss %.4f -> %s", summary["overrides"], summary["status"],
             summary.get("final/val_loss", float("nan")), cfg.out_dir)
    return objective(summary)


def quiet_follower() -> None:
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()


def discard_hydra_only_dir(run_dir: Path, with_parents: bool) -> None:
    """Hydra makes the run dir (its .hydra/ and the job's log) before the run can validate its config: a refused
    config leaves nothing behind, so `outputs/` never fills with typo runs. Only a dir holding nothing else goes;
    `with_parents` (the default `outputs/<date>/<time>` dir, not one the user named): then its parents below the
    working dir while they are empty."""
    contents = list(run_dir.iterdir()) if run_dir.is_dir() else []
    if not contents or any(p.name != ".hydra" and p.suffix != ".log" for p in contents):
        return
    for handler in list(logging.getLogger().handlers):  # the job's log file lives there
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir.resolve():
            logging.getLogger().removeHandler(handler)
            handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    cwd = Path.cwd()
    for parent in run_dir.resolve().parents if with_parents else ():  # outputs/<date>, then outputs: below the working dir, while empty
        if parent == cwd or cwd not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def objective(summary: dict) -> float:
    """What a search sweeper (hydra/sweeper=lr_search) minimizes: the final val loss; +inf for a diverged run."""
    if summary["status"] == "diverged":
        return float("inf")
    return float(summary["final/val_loss"])


if __name__ == "__main__":
    main()
