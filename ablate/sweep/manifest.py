"""`manifest.json`: a sweep's own statement of what it is — which studies it runs, the factor(s) each varies, their
baseline and options, the seeds, the overrides every job shares and each job's overrides in launch order.

The sweeper writes it into the sweep dir; `ablate.compare` and the ladder read it, so a sweep without study info
in its runs' summaries (`python -m ablate.run -m attention=gqa,mla,mqa pos_enc=rope`) is still compared against
the baseline it declares (there: gqa, the first option given) instead of one guessed from the configs.

    {"version": 1,
     "studies": [{"name": null, "varies": ["attention"], "baseline": {"attention": "gqa"},
                  "options": {"attention": ["gqa", "mla", "mqa"]}}],
     "seeds": [0, 1],
     "fixed": ["pos_enc=rope"],
     "jobs": [["attention=gqa", "pos_enc=rope", "seed=0"], ...]}

A study of named variants (`+study=modern`) varies `variant`, and its entry adds what each variant is:
`"variants": {"p5": [], "dyt": ["norm=dyt"], ...}` (the overrides on top of the study's base).

Reading is tolerant: a missing file is no manifest, and a corrupt one is reported (a warning naming the file) and
then ignored — a report never fails because of it.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ablate.spec import REPEAT_KEYS, key_in
from ablate.track import atomic_write

FILENAME = "manifest.json"
VERSION = 1


class ManifestWarning(UserWarning):
    """A manifest.json that cannot be read; it is ignored."""


@dataclass
class StudyEntry:
    name: str | None  # the study (conf/study/<name>.yaml); None for an ad-hoc sweep
    varies: list[str]  # config keys varied: ["attention"], ["phase"]; an ad-hoc grid may vary several
    baseline: dict[str, str]  # {key: option}; ad hoc: the first option given for each varied key
    options: dict[str, list[str]]  # {key: options}, baseline first
    variants: dict[str, list[str]] = field(default_factory=dict)  # a study of named variants: name -> its overrides


@dataclass(kw_only=True)
class Manifest:
    version: int = VERSION
    studies: list[StudyEntry] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)  # the overrides every job shares
    jobs: list[list[str]] = field(default_factory=list)  # each job's overrides, in launch order
    # train.ensemble_seeds: the run each job's members record, as the overrides of the separate run of that seed
    # (`<job's overrides>, seed=<k>`), in launch order; absent when no job is an ensemble
    members: list[list[str]] = field(default_factory=list)

    def to_json(self) -> str:
        """Indented JSON with one line per study and per job."""
        data = asdict(self)
        for study in data["studies"]:  # only studies of named variants have them
            if not study["variants"]:
                del study["variants"]

        def items(values: list) -> str:
            return "[\n" + ",\n".join(f"    {json.dumps(v)}" for v in values) + "\n  ]" if values else "[]"

        lines = [f'  "version": {json.dumps(data["version"])}', f'  "studies": {items(data["studies"])}',
                 f'  "seeds": {json.dumps(data["seeds"])}', f'  "fixed": {json.dumps(data["fixed"])}',
                 f'  "jobs": {items(data["jobs"])}']
        if data["members"]:
            lines.append(f'  "members": {items(data["members"])}')
        return "{\n" + ",\n".join(lines) + "\n}\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """A manifest from its JSON form; ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("version", VERSION)
        if version != VERSION:
            raise ValueError(f"version {version!r}; this ablate reads version {VERSION}")
        studies = data.get("studies", [])
        if not isinstance(studies, list):
            raise ValueError("`studies` is not a list")
        return cls(version=VERSION, studies=[_study_entry(s) for s in studies],
                   seeds=[_int(s, "seeds") for s in _list(data.get("seeds", []), "seeds")],
                   fixed=_strings(data.get("fixed", []), "fixed"),
                   jobs=[_strings(job, "jobs") for job in _list(data.get("jobs", []), "jobs")],
                   members=[_strings(m, "members") for m in _list(data.get("members", []), "members")])


def _study_entry(data: Any) -> StudyEntry:
    if not isinstance(data, dict):
        raise ValueError("a `studies` entry is not an object")
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"study name {name!r} is not a string")
    varies = data.get("varies", [])
    varies = [varies] if isinstance(varies, str) else _strings(varies, "varies")
    baseline, options = data.get("baseline", {}), data.get("options", {})
    if not isinstance(baseline, dict) or not isinstance(options, dict):
        raise ValueError("`baseline` and `options` must be objects")
    variants = data.get("variants", {})
    if not isinstance(variants, dict):
        raise ValueError("`variants` must be an object")
    return StudyEntry(name=name, varies=varies,
                      baseline={str(k): _scalar(v, "baseline") for k, v in baseline.items()},
                      options={str(k): [_scalar(o, "options") for o in _list(v, "options")]
                               for k, v in options.items()},
                      variants={str(k): _strings(v, "variants") for k, v in variants.items()})


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"`{what}` is not a list")
    return value


def _strings(value: Any, what: str) -> list[str]:
    return [_scalar(v, what) for v in _list(value, what)]


def _scalar(value: Any, what: str) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise ValueError(f"`{what}` holds {value!r}, not a string")
    return str(value)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"`{what}` holds {value!r}, not an integer")
    return value


def manifest_path(path_or_dir: str | os.PathLike) -> Path:
    path = Path(path_or_dir)
    return path if path.name == FILENAME else path / FILENAME


def write_manifest(sweep_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Write `<sweep_dir>/manifest.json` atomically (readers never see a partial file), with the user's umask."""
    path = Path(sweep_dir) / FILENAME
    atomic_write(path, manifest.to_json())
    return path


def read_manifest(path_or_dir: str | os.PathLike) -> Manifest | None:
    """The manifest in a sweep dir (or at a path to manifest.json). None when there is none; a corrupt one warns
    (naming the file) and is ignored — never an exception."""
    path = manifest_path(path_or_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        warnings.warn(f"{path}: cannot read it ({e}); ignored", ManifestWarning, stacklevel=2)
        return None
    try:
        return Manifest.from_dict(json.loads(text))
    except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        warnings.warn(f"{path}: not a valid sweep manifest ({e}); ignored", ManifestWarning, stacklevel=2)
        return None


def find_manifest(run_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> Path | None:
    """The nearest manifest.json above a run dir: its parent (the sweep dir), then each further parent up to and
    including `root`. When `root` is not above the run dir (or None), only the parent is looked at."""
    run_dir = Path(run_dir).resolve()
    top = Path(root).resolve() if root is not None else None
    for directory in run_dir.parents:
        candidate = directory / FILENAME
        if candidate.is_file():
            return candidate
        if top is None or directory == top or top not in directory.parents:
            return None
    return None


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def adhoc_manifest(sweep_params: dict[str, list[str]], seeds: list[int], fixed: list[str],
                   jobs: list[list[str]]) -> Manifest:
    """The manifest of a sweep that is no named study (`-m attention=gqa,mla,mqa pos_enc=rope`): it varies the
    keys given more than one value (seeds are repeats, not factors), and each key's baseline is its first value."""
    options: dict[str, list[str]] = {}
    for key, values in sweep_params.items():
        values = list(dict.fromkeys(str(v) for v in values))
        if len(values) > 1 and not key_in(_key(key), REPEAT_KEYS):
            options[_key(key)] = values
    entry = StudyEntry(name=None, varies=list(options), baseline={k: v[0] for k, v in options.items()},
                       options=options)
    return Manifest(studies=[entry], seeds=[int(s) for s in seeds], fixed=[str(o) for o in fixed],
                    jobs=[[str(o) for o in job] for job in jobs])
