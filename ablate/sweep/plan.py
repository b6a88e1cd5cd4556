"""`python -m ablate.sweep.plan <the same arguments as a sweep>`: list the jobs a multirun would launch, using
Hydra's own override parser and the configured sweeper's expansion, and check every job as the sweeper does
before it starts one (`refuse_bad_jobs`), without running or writing anything."""

from __future__ import annotations

import argparse
import sys

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.utils import get_class
from omegaconf import DictConfig

from ablate import CONF_DIR
from ablate.spec import SpecError
from ablate.sweep.sweeper import composition_problem, job_problems, problem_lines

USAGE = """List the jobs `python -m ablate.run -m <arguments>` would launch and check each one's config as the
sweeper does before it starts any (one line per problem); runs and writes nothing. Exit status 2 if a job has
a problem, as the sweep would refuse to start.

examples:
  python -m ablate.sweep.plan attention=gqa,mla,mqa pos_enc=rope seed=0,1,2
  python -m ablate.sweep.plan +study=all seed=0,1,2"""


def plan(arguments: list[str]) -> list[list[str]]:
    """The jobs of a sweep with these arguments, in launch order."""
    return checked_plan(arguments, check=False)[0]


def checked_plan(arguments: list[str], check: bool = True) -> tuple[list[list[str]], list[list[str]], int]:
    """(the jobs, each job's config problems, how many jobs follow once these ran: study.tune_lr's stage 2, whose
    lr stage 1 chooses); a problem composing the sweep itself raises HydraException."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(arguments) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        jobs, later = _expand(cfg, parser, arguments)
        loader = GlobalHydra.instance().config_loader()
        problems = [job_problems(loader, cfg, job) if check else [] for job in jobs]
    return jobs, problems, later


def _expand(cfg: DictConfig, parser: OverridesParser, arguments: list[str]) -> tuple[list[list[str]], int]:
    sweeper_conf = cfg.hydra.sweeper
    params = [f"{key}={value}" for key, value in (sweeper_conf.get("params") or {}).items()]
    sweeper = get_class(sweeper_conf._target_)(max_batch_size=None, params=None)
    if not hasattr(sweeper, "split_arguments"):  # (not isinstance: Hydra's plugin scan re-imports its modules)
        raise SystemExit(f"cannot list jobs of sweeper {sweeper_conf._target_}: it decides its jobs while running")
    sweeper.config = cfg
    batches = sweeper.split_arguments(parser.parse_overrides(params + list(arguments)), None)
    tuning = getattr(sweeper, "tuning", None)
    return [job for batch in batches for job in batch], len(tuning.jobs) if tuning else 0


def main(argv: list[str] | None = None) -> None:
    """`python -m ablate.sweep.plan` and `ablate-plan`: the jobs on stdout (a bad one marked `!`), each problem on
    stderr in the sweeper's words."""
    cli = argparse.ArgumentParser(prog="python -m ablate.sweep.plan", description=USAGE,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("-m", "--multirun", action="store_true",
                     help="accepted so a sweep's command line can be pasted as it is; plan always lists a multirun")
    cli.add_argument("overrides", nargs="*", help="the sweep's overrides, e.g. attention=gqa,mla seed=0,1,2")
    arguments = cli.parse_args(sys.argv[1:] if argv is None else argv).overrides
    try:
        jobs, problems, later = checked_plan(arguments)
    except HydraException as e:
        print(f"config error: {composition_problem(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except SpecError as e:  # a study option that cannot work (study.tune_lr without a grid, ...): a line each
        for line in e.problems:
            print(f"config error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as e:  # a study the sweeper cannot expand (study.include naming no study, ...): its one line
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    for number, (job, bad) in enumerate(zip(jobs, problems)):
        print(f"{number:3d}{'!' if bad else ' '} {' '.join(job)}")
    print(f"{len(jobs)} jobs")
    if later:
        print(f"then {later} jobs, every seed of each variant at the lr these choose (study.tune_lr's stage 2)")
    for line in problem_lines(jobs, problems):
        print(f"config error: {line}", file=sys.stderr)
    if any(problems):
        print(f"{sum(map(bool, problems))} of {len(jobs)} jobs have config errors: the sweep would start none",
              file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
