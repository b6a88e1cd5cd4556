"""`python -m ablate.sweep.plan <the same arguments as a sweep>`: list the jobs a multirun would launch, using
Hydra's own override parser and the configured sweeper's expansion, without running or writing anything."""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class

from ablate import CONF_DIR


def plan(arguments: list[str]) -> list[list[str]]:
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(arguments) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=fixed, return_hydra_config=True)
    sweeper_conf = cfg.hydra.sweeper
    params = [f"{key}={value}" for key, value in (sweeper_conf.get("params") or {}).items()]
    sweeper = get_class(sweeper_conf._target_)(max_batch_size=None, params=None)
    if not hasattr(sweeper, "split_arguments"):  # (not isinstance: Hydra's plugin scan re-imports its modules)
        raise SystemExit(f"cannot list jobs of sweeper {sweeper_conf._target_}: it decides its jobs while running")
    sweeper.config = cfg
    batches = sweeper.split_arguments(parser.parse_overrides(params + list(arguments)), None)
    return [job for batch in batches for job in batch]


def main() -> None:
    jobs = plan(sys.argv[1:])
    for i, job in enumerate(jobs):
        print(f"{i:3d}  {' '.join(job)}")
    print(f"{len(jobs)} jobs")


if __name__ == "__main__":
    main()
