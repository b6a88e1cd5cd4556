"""Features that live in an optional extra, so the base install stays lean: the override that asks for one, the
Hydra plugin it needs and the pip line that brings it. Checked before Hydra composes, which would otherwise say only
"Could not find 'hydra/launcher/submitit_slurm'"."""

from __future__ import annotations

import importlib.util

# (override group, option) -> (plugin module, extra)
PLUGINS = {
    ("hydra/launcher", "slurm"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher", "slurm_ddp"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher", "submitit_slurm"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher", "submitit_local"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/sweeper", "lr_search"): ("hydra_plugins.hydra_optuna_sweeper", "optuna"),
    ("hydra/sweeper", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "optuna"),
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent namespace (hydra_plugins) itself is missing
        return False


def missing_extras(args: list[str]) -> list[str]:
    """One line per command-line override whose plugin is not installed, naming the extra that brings it."""
    problems = []
    for arg in args:
        group, _, option = arg.lstrip("+").partition("=")
        module, extra = PLUGINS.get((group, option), (None, None))
        if module and not installed(module):
            problems.append(f"{group}={option} needs the `{extra}` extra: pip install 'ablate[{extra}]' "
                            f"(or pip install -e '.[{extra}]' in a checkout)")
    return problems
