"""The jobs of every multirun, studies included, and the sweep's manifest (the Hydra plugin that uses them is
`hydra_plugins/ablate_sweeper`: Hydra accepts sweepers only from that namespace).

Without a study it expands the command line exactly as Hydra's basic sweeper does. With `+study=<name>` it adds
that study's jobs: one per option of the family it varies, found in `conf/<family>/` and on `hydra.searchpath`
(so an option a user adds joins the study by itself), baseline first — or, for a study of named variants
(`study.variants`: name -> overrides, on top of `study.base`; `+study=modern`), one per variant, any knob or set
of overrides; `+study=all` takes the union of the studies
in `study.include`. Either way it writes `manifest.json` in the sweep dir (which study, what varies, baseline,
options, seeds, jobs) before the first job, for `ablate.compare` and the ladder to read. Launching stays with
whatever `hydra/launcher` is configured.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.core.override_parser.types import Override
import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from ablate import CONF_DIR
from ablate.components.options import option_names
from ablate.spec import REPEAT_KEYS, SpecError, key_in
from ablate.naming import member_overrides
from ablate.sweep.manifest import Manifest, StudyEntry, adhoc_manifest

log = logging.getLogger("ablate")
STUDY_DIR = CONF_DIR / "study"
LOCAL_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"  # Hydra's default: jobs run here
ENSEMBLE_KEY = "train.ensemble_seeds"
VARIANT_KEY = "study.variant"  # what a study of named variants sweeps; summary.json's `variant`


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def study_options(study: DictConfig, searchpath: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """(the override key a study sweeps, its options with the baseline first). A study lists its options in
    `hydra.sweeper.params` (the phases), names its variants (`study.variants`, swept as `study.variant`), or varies
    a family, whose options are found, minus `study.exclude`."""
    variants = OmegaConf.select(study, "study.variants")
    if variants:
        baseline = str(study.study.baseline)
        return VARIANT_KEY, sorted((str(name) for name in variants), key=lambda name: name != baseline)
    params = OmegaConf.select(study, "hydra.sweeper.params")
    if params:
        (key, values), = params.items()
        return key, [v.strip() for v in str(values).split(",")]
    family = str(study.study.varies)
    excluded = {str(x) for x in study.study.get("exclude") or []}
    found = [o for o in option_names(family, searchpath) if o not in excluded]
    baseline = str(study.study.baseline)
    return family, sorted(found, key=lambda option: option != baseline)


def load_study(name: str, where: str = "study.include") -> DictConfig:
    """conf/study/<name>.yaml; ValueError naming `where` (the key or flag that named it) and the studies there are."""
    path = STUDY_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in STUDY_DIR.glob("*.yaml")))
        raise ValueError(f"{where}: no study named {name}; choose from {known}")
    return OmegaConf.load(path)


def searchpath_of(config: DictConfig) -> tuple[str, ...]:
    """The composed config's `hydra.searchpath` as an override that discovery can pass back to Hydra."""
    entries = list(OmegaConf.select(config, "hydra.searchpath") or [])
    return (f"hydra.searchpath=[{','.join(entries)}]",) if entries else ()


def plan_jobs(config: DictConfig, overrides: list[Override], cli_jobs: list[list[str]]
              ) -> tuple[list[list[str]], Manifest]:
    """A sweep's jobs and its manifest, from the composed config and the command line's own jobs."""
    study = config.get("study")
    seeds, fixed = _seeds(overrides), _fixed(overrides)
    if not (study and study.get("name")):
        jobs, manifest = cli_jobs, adhoc_manifest(_sweeps(overrides), seeds, fixed, cli_jobs)
    else:
        jobs, entries = study_jobs(study, cli_jobs, searchpath_of(config))
        manifest = Manifest(studies=entries, seeds=seeds, fixed=fixed, jobs=jobs)
    for job in jobs:
        ensemble = _ensemble_seeds(config, job)
        manifest.members += [member_overrides(job, seed) for seed in ensemble]
        manifest.seeds = manifest.seeds or ensemble
    return jobs, manifest


def _ensemble_seeds(config: DictConfig, job: list[str]) -> list[int]:
    """The seeds a job trains as one ensemble (train.ensemble_seeds: its own override, else the sweep's config)."""
    given = [o.split("=", 1)[1] for o in job if _key(o) == ENSEMBLE_KEY]
    seeds = yaml.safe_load(given[-1]) if given else OmegaConf.select(config, ENSEMBLE_KEY)
    return [int(seed) for seed in seeds] if isinstance(seeds, (list, ListConfig)) else []


def study_jobs(study: DictConfig, cli_jobs: list[list[str]], searchpath: tuple[str, ...] = ()
               ) -> tuple[list[list[str]], list[StudyEntry]]:
    """One study: its options × the command line's jobs, unless the command line sweeps the study's key itself
    (`+study=attention attention=mha,gqa`, or the phases' own params). `study.include`: the union of those
    studies' jobs, each job tagged with its study; there a study's own choice wins over the command line."""
    if not study.get("include"):
        key, options = study_options(OmegaConf.create({"study": study}), searchpath)
        given = [o.split("=", 1)[1] for job in cli_jobs for o in job if _key(o) == _key(key)]
        if given and study.get("variants"):  # `+study=modern study.variant=p5,dyt`: those variants only
            jobs = [variant_job(study, _value(job, key), [o for o in job if _key(o) != key]) for job in cli_jobs]
            return jobs, [_entry(study, list(dict.fromkeys(given)))]
        if given:
            return cli_jobs, [_entry(study, list(dict.fromkeys(given)))]
        if study.get("variants"):
            return [variant_job(study, option, job) for option in options for job in cli_jobs], [_entry(study, options)]
        return [[f"{key}={option}", *job] for option in options for job in cli_jobs], [_entry(study, options)]
    jobs, entries = [], []
    for name in study.include:
        spec = load_study(str(name))
        key, options = study_options(spec, searchpath)
        tags = [f"study.name={spec.study.name}", f"study.varies={spec.study.varies}",
                f"study.baseline={spec.study.baseline}"]
        for option in options:
            for job in cli_jobs:
                if spec.study.get("variants"):
                    jobs.append([*tags, *variant_job(spec.study, option, job)])
                else:
                    jobs.append([f"{key}={option}", *tags, *(o for o in job if _key(o) != _key(key))])
        entries.append(_entry(spec.study, options))
    return jobs, entries


def variant_job(study: DictConfig, name: str, job: list[str]) -> list[str]:
    """A named variant's job: the study's `base` overrides, then the command line's (which may move the
    baseline), then the variant's own; for the same key the later wins. Tagged `++study.variant=<name>`."""
    if name not in study.variants:
        raise ValueError(f"{VARIANT_KEY}={name}: study {study.name} has no variant {name}; choose from "
                         f"{', '.join(map(str, study.variants))}")
    merged: dict[str, str] = {}
    for override in [*(study.get("base") or []), *job, *(study.variants[name] or [])]:
        merged[_key(str(override))] = str(override)
    return [*merged.values(), f"++{VARIANT_KEY}={name}"]


def _value(job: list[str], key: str) -> str:
    return next(o.split("=", 1)[1] for o in job if _key(o) == key)


def job_problems(config_loader: Any, config: DictConfig, job: list[str]) -> list[str]:
    """The problems of one job's config, one line each: what Hydra cannot compose, or what `validate` refuses
    (its device too when the jobs run on this machine; a launcher that sends them elsewhere leaves that to each
    job, which checks before it writes anything)."""
    from hydra.errors import HydraException

    from ablate.config import ensemble_override_problems, validate

    runs_here = OmegaConf.select(config, "hydra.launcher._target_") == LOCAL_LAUNCHER
    try:
        job_config = config_loader.load_sweep_config(config, list(job))
        validate(job_config, runs_here=runs_here)
    except SpecError as e:
        return list(e.problems)
    except HydraException as e:
        return [composition_problem(e)]
    return ensemble_override_problems(job_config, list(job))


def composition_problem(e: Exception) -> str:
    """Hydra's composition error on one line: an option that does not exist names the options there are."""
    from hydra.errors import MissingConfigException

    if isinstance(e, MissingConfigException):
        if e.options and e.missing_cfg_file and "/" in e.missing_cfg_file:
            group, name = e.missing_cfg_file.rsplit("/", 1)
            return f"{group}={name} is not an option; choose one of {', '.join(e.options)}"
        return str(e).splitlines()[0]  # (the rest is Hydra's search path)
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip())


def refuse_bad_jobs(config_loader: Any, config: DictConfig, jobs: list[list[str]]) -> None:
    """Every job's config is composed and validated before the first job starts: a sweep with a bad job starts
    none, and says one line per problem per job (exit 2, nothing written)."""
    problems = [job_problems(config_loader, config, job) for job in jobs]
    if any(problems):
        for line in problem_lines(jobs, problems):
            log.error("config error: %s", line)
        log.error("%d of %d jobs have config errors: no job was started", sum(map(bool, problems)), len(jobs))
        raise SystemExit(2)


def problem_lines(jobs: list[list[str]], problems: list[list[str]]) -> list[str]:
    """Each job's problems, one line each, naming the job by its number and overrides."""
    return [f"job {number} ({' '.join(job)}): {line}"
            for number, (job, lines) in enumerate(zip(jobs, problems)) for line in lines]


def _entry(study: DictConfig, options: list[str]) -> StudyEntry:
    varies = str(study.varies)
    variants = {name: [str(o) for o in study.variants[name] or []] for name in options} \
        if study.get("variants") else {}
    return StudyEntry(name=str(study.name), varies=[varies], baseline={varies: str(study.baseline)},
                      options={varies: options}, variants=variants)


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
