"""ablate's Hydra sweeper: every multirun's job list, studies included, and the sweep's manifest.

Without a study it expands the command line exactly as Hydra's basic sweeper does. With `+study=<name>` it adds
that study's jobs: one per option of the family it varies, found in `conf/<family>/` and on `hydra.searchpath`
(so an option a user adds joins the study by itself), baseline first; `+study=all` takes the union of the studies
in `study.include`. Either way it writes `manifest.json` in the sweep dir (which study, what varies, baseline,
options, seeds, jobs) before the first job, for `ablate.compare` and the ladder to read. Launching stays with
whatever `hydra/launcher` is configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.override_parser.types import Override
from hydra.plugins.sweeper import Sweeper
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ablate.components.options import CONF_DIR, option_names
from ablate.spec import REPEAT_KEYS, key_in
from ablate.sweep.manifest import Manifest, StudyEntry, adhoc_manifest, write_manifest

STUDY_DIR = CONF_DIR / "study"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def study_options(study: DictConfig, searchpath: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """(the override key a study sweeps, its options with the baseline first). A study lists its options in
    `hydra.sweeper.params` (the phases) or varies a family, whose options are found, minus `study.exclude`."""
    params = OmegaConf.select(study, "hydra.sweeper.params")
    if params:
        (key, values), = params.items()
        return key, [v.strip() for v in str(values).split(",")]
    family = str(study.study.varies)
    excluded = {str(x) for x in study.study.get("exclude") or []}
    found = [o for o in option_names(family, searchpath) if o not in excluded]
    baseline = str(study.study.baseline)
    return family, sorted(found, key=lambda option: option != baseline)


def load_study(name: str) -> DictConfig:
    path = STUDY_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in STUDY_DIR.glob("*.yaml")))
        raise ValueError(f"study.include: no study named {name}; choose from {known}")
    return OmegaConf.load(path)


def searchpath_of(config: DictConfig) -> tuple[str, ...]:
    """The composed config's `hydra.searchpath` as an override that discovery can pass back to Hydra."""
    entries = list(OmegaConf.select(config, "hydra.searchpath") or [])
    return (f"hydra.searchpath=[{','.join(entries)}]",) if entries else ()


class StudySweeper(Sweeper):
    """Hydra's basic sweeper with another job list. It wraps rather than subclasses BasicSweeper because Hydra's
    plugin discovery re-imports that class, which breaks `super()` calls inside it for subclasses."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None):
        super().__init__()
        self.basic = get_class(BASIC_SWEEPER)(max_batch_size=max_batch_size, params=params)
        self.basic.split_arguments = self.split_arguments  # the one step that differs
        self.config: DictConfig | None = None
        self.manifest: Manifest | None = None
        self.launching = False  # set up by Hydra to launch (not only to list jobs): write the manifest

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config = config
        self.launching = True
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.basic.sweep(arguments)

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        assert self.config is not None
        cli_jobs = [job for batch in type(self.basic).split_arguments(overrides, None) for job in batch]
        study = self.config.get("study")
        seeds, fixed = _seeds(overrides), _fixed(overrides)
        if not (study and study.get("name")):
            jobs = cli_jobs
            self.manifest = adhoc_manifest(_sweeps(overrides), seeds, fixed, jobs)
        else:
            jobs, entries = self._study_jobs(study, cli_jobs)
            self.manifest = Manifest(studies=entries, seeds=seeds, fixed=fixed, jobs=jobs)
        if self.launching:
            write_manifest(Path(self.config.hydra.sweep.dir), self.manifest)
        size = max_batch_size or len(jobs) or 1
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]

    def _study_jobs(self, study: DictConfig, cli_jobs: list[list[str]]) -> tuple[list[list[str]], list[StudyEntry]]:
        """One study: its options × the command line's jobs, unless the command line sweeps the study's key itself
        (`+study=attention attention=mha,gqa`, or the phases' own params). `study.include`: the union of those
        studies' jobs, each job tagged with its study; there a study's own choice wins over the command line."""
        searchpath = searchpath_of(self.config)
        if not study.get("include"):
            key, options = study_options(OmegaConf.create({"study": study}), searchpath)
            given = [o.split("=", 1)[1] for job in cli_jobs for o in job if _key(o) == _key(key)]
            if given:
                options = list(dict.fromkeys(given))
                jobs = cli_jobs
            else:
                jobs = [[f"{key}={option}", *job] for option in options for job in cli_jobs]
            return jobs, [_entry(study, options)]
        jobs, entries = [], []
        for name in study.include:
            spec = load_study(str(name))
            key, options = study_options(spec, searchpath)
            tags = [f"study.name={spec.study.name}", f"study.varies={spec.study.varies}",
                    f"study.baseline={spec.study.baseline}"]
            for option in options:
                for job in cli_jobs:
                    jobs.append([f"{key}={option}", *tags, *(o for o in job if _key(o) != _key(key))])
            entries.append(_entry(spec.study, options))
        return jobs, entries


def _entry(study: DictConfig, options: list[str]) -> StudyEntry:
    varies = str(study.varies)
    return StudyEntry(name=str(study.name), varies=[varies], baseline={varies: str(study.baseline)},
                      options={varies: options})


def _sweeps(overrides: list[Override]) -> dict[str, list[str]]:
    return {o.get_key_element().lstrip("+~"): list(o.sweep_string_iterator()) for o in overrides
            if o.is_sweep_override()}


def _seeds(overrides: list[Override]) -> list[int]:
    for o in overrides:
        if o.get_key_element().lstrip("+~") == "seed":
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            return [int(v) for v in values]
    return []


def _fixed(overrides: list[Override]) -> list[str]:
    return [o.input_line for o in overrides if not o.is_sweep_override() and not key_in(o.get_key_element(),
                                                                                          REPEAT_KEYS)]
