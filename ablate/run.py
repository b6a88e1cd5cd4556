"""`python -m ablate.run [overrides]` (one run) or `python -m ablate.run -m a=x,y ...` (a sweep)."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from ablate.spec import SpecError
from ablate.training import train

log = logging.getLogger("ablate")


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    with open_dict(cfg):
        cfg.out_dir = hydra_cfg.runtime.output_dir
        if cfg.logger.name == "wandb" and cfg.logger.group is None and hydra_cfg.mode == RunMode.MULTIRUN:
            cfg.logger.group = hydra_cfg.sweep.dir.rstrip("/").split("/", 1)[-1].replace("/", "_")
    # A failed job is recorded in its run dir; a sweep goes on with the next job unless sweep.fail_fast is set.
    # SystemExit is not an Exception, so Hydra's launcher does not catch it: that is what stops a fail-fast sweep.
    keep_going = hydra_cfg.mode == RunMode.MULTIRUN and not cfg.sweep.fail_fast
    try:
        summary = train(cfg, list(hydra_cfg.overrides.task))
    except SpecError as e:
        for line in e.problems:
            log.error("config error: %s", line)
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


def objective(summary: dict) -> float:
    """What a search sweeper (hydra/sweeper=lr_search) minimizes: the final val loss; +inf for a diverged run."""
    if summary["status"] == "diverged":
        return float("inf")
    return float(summary["final/val_loss"])


if __name__ == "__main__":
    main()
