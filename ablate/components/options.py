"""Options are found, not listed: the YAMLs of `conf/<family>/` and of any `hydra.searchpath` entry.

Hydra's own config repository lists and composes them, so an option a user adds in their own config dir
(`hydra.searchpath=[file://my_conf]`) is found exactly as Hydra would find it for `attention=<name>`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from ablate import CONF_DIR
from ablate.spec import TARGET_KEY


@dataclass(frozen=True)
class Option:
    family: str
    name: str  # what a user types: attention=<name> (the YAML's file name)
    target: str | None  # its class, `_target_`
    knobs: dict[str, Any] = field(default_factory=dict)


def searchpath_overrides(overrides: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The overrides that change where Hydra looks for configs."""
    return tuple(o for o in overrides if o.lstrip("+~").startswith("hydra.searchpath"))


@functools.lru_cache(maxsize=None)
def _loader():
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    return ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))


def option_names(family: str, searchpath: tuple[str, ...] = ()) -> list[str]:
    """The options of `family`, sorted, including those on the search path."""
    return sorted(_loader().get_group_options(family, config_name="config", overrides=list(searchpath)))


@functools.lru_cache(maxsize=None)
def _option(family: str, name: str, searchpath: tuple[str, ...]) -> Option:
    from hydra.types import RunMode

    cfg = _loader().load_configuration("config", [f"{family}={name}", *searchpath], RunMode.RUN)
    node = OmegaConf.to_container(cfg[family], resolve=False)
    target = node.pop(TARGET_KEY, None)
    node.pop("name", None)
    return Option(family, name, target, node)


def discover(family: str, searchpath: tuple[str, ...] = ()) -> dict[str, Option]:
    """{name: Option} for every option of `family`, built-in and on the search path."""
    searchpath = tuple(searchpath)
    return {name: _option(family, name, searchpath) for name in option_names(family, searchpath)}


def option(family: str, name: str, searchpath: tuple[str, ...] = ()) -> Option:
    """One option by name (KeyError naming the options there are, if none has that name)."""
    found = discover(family, searchpath)
    if name not in found:
        raise KeyError(f"{family}={name} is not an option; choose one of {', '.join(found)}")
    return found[name]
