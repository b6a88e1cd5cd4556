"""What a run computes, as flat config keys, and which of those keys vary across runs; the baselines named by
conf/study and by summary.json. ablate.compare.group builds sections from these."""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from typing import Any

from omegaconf import OmegaConf

from ablate.compare.load import Run
from ablate import CONF_DIR
from ablate.spec import (ADDED_DEFAULTS, CHANGED_DEFAULTS, FAMILIES, RECORDING_ONLY, REPEAT_KEYS, TARGET_KEY,
                         at_added_default, key_in)

# Config keys that say where/how a run is recorded, which study filed it, or which repeat it is — not what is
# compared (an injected NaN, debug.*, is a diverged seed). Options' classes (`attention._target_`) are left out too:
# an option is its name and knobs, and runs recorded before `_target_` existed must group with those after.
IGNORED = RECORDING_ONLY + REPEAT_KEYS


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def identity(run: Run) -> dict[str, str]:
    """What the run computes, as flat `key: value` (family options as `<family>.name`)."""
    if run.config:
        flat = flatten(run.config)
    else:  # no config.yaml: the choices the summary carries
        flat = {f"{f}.name": str(run.summary[f]) for f in FAMILIES if f in run.summary}
        flat.update({f"{k}.name": str(run.summary[k]) for k in ("model", "data") if k in run.summary})
    for key, default in ADDED_DEFAULTS.items():  # a run recorded before the key existed computed its default
        group_added = key.endswith(".name")  # a whole group added since (optim): its option is the key itself
        present = group_added or f"{key.split('.')[0]}.name" in flat
        if present and (key not in flat or at_added_default(key, flat[key])):
            flat[key] = str(default)
    for key, (new, before) in CHANGED_DEFAULTS.items():
        if flat.get(key) == str(new):
            flat[key] = str(before)
    if (run.config.get("study") or {}).get("tune_lr"):  # study.tune_lr chose this lr for the variant: part of it
        flat.pop("train.lr", None)
    return {k: v for k, v in flat.items() if not ignored(k)}


def ignored(key: str) -> bool:
    node, _, leaf = key.partition(".")
    return key_in(key, IGNORED) or (leaf == TARGET_KEY and bool(node))


@functools.cache
def study_baselines() -> dict[str, str]:
    """{family: baseline option} as each one-factor study states it (`study.baseline` in
    conf/study/<family>.yaml): the baseline used when neither the runs, their manifest nor a flag names one."""
    found = {}
    for family in FAMILIES:
        path = CONF_DIR / "study" / f"{family}.yaml"
        if path.is_file():
            baseline = OmegaConf.select(OmegaConf.load(path), "study.baseline", default=None)
            if baseline is not None:
                found[family] = str(baseline)
    return found


def display(key: str) -> str:
    return key.removesuffix(".name")


def config_key(name: str, known: set[str]) -> str:
    """`attention` → `attention.name` (a config group's option); other keys unchanged."""
    return f"{name}.name" if f"{name}.name" in known or name in FAMILIES else name


def varied_keys(identities: list[dict[str, str]]) -> list[str]:
    """Keys whose value differs across runs. A group's own knobs (attention.n_kv_heads) count only when they
    differ between runs of the same option: otherwise the option's name already says it."""
    keys = sorted({k for ident in identities for k in ident})
    varied = [k for k in keys if len({ident.get(k) for ident in identities}) > 1]
    kept = []
    for key in varied:
        parent = key.rsplit(".", 1)[0] if "." in key else None
        parent_name = f"{parent}.name"
        if parent and key != parent_name and parent_name in keys:
            by_option = defaultdict(set)
            for ident in identities:
                by_option[ident.get(parent_name)].add(ident.get(key))
            if all(len(values) == 1 for values in by_option.values()):
                continue
        kept.append(key)
    return sorted(kept, key=key_order)


def key_order(key: str) -> tuple[int, str]:
    family = key.split(".", 1)[0]
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES), key)


def label_of(ident: dict[str, str], keys: list[str]) -> str:
    if len(keys) == 1 and keys[0].endswith(".name"):
        return ident.get(keys[0], "-")
    parts = [f"{display(k)}={ident[k]}" for k in keys if k in ident]
    return ", ".join(parts) or "all runs"


def study_baseline(summary: dict[str, Any]) -> dict[str, str]:
    """A study's baseline as summary.json states it: an option of the factor it varies (`baseline: mha`,
    `varies: attention`), or assignments ({family: option}, "k=v,k2=v2", ["k=v", ...])."""
    spec, varies = summary.get("baseline"), summary.get("varies")
    if spec is None:
        return {}
    if isinstance(varies, str) and not isinstance(spec, (dict, list, tuple)) and "=" not in str(spec):
        return {varies: str(spec)}
    return parse_assignments(spec)


def parse_assignments(spec: Any) -> dict[str, str]:
    """{family: option}, "k=v,k2=v2", or ["k=v", ...] as {key: value}."""
    if isinstance(spec, dict):
        return {str(k): str(v) for k, v in spec.items()}
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",") if spec else []
    pairs = {}
    for item in items:
        if "=" in str(item):
            key, value = str(item).split("=", 1)
            pairs[key.strip().lstrip("+~")] = value.strip()
    return pairs


def is_knob(key: str, identities: list[dict[str, str]]) -> bool:
    """attention.n_kv_heads is a knob of the attention option; the partition into studies goes by options."""
    parent = key.rsplit(".", 1)[0] if "." in key else None
    return bool(parent) and key != f"{parent}.name" and any(f"{parent}.name" in i for i in identities)


def as_in_runs(value: str, values: Any) -> str:
    """`value` (from a flag or a manifest, as typed on a command line) spelled as the runs' configs spell it:
    `1e-3` is `0.001`, `true` is `True`. Unchanged when no run's value matches."""
    present = [str(v) for v in values if v is not None]
    if value in present:
        return value
    for other in present:
        if other.lower() == str(value).lower() or _same_number(other, value):
            return other
    return value


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def reference_of(keys: list[str], identities: list[dict[str, str]], flags: dict[str, str],
                 stated: dict[str, str] | None = None) -> dict[str, str]:
    """Per key: the --baseline value, else the baseline the sweep's manifest states, else the study's baseline
    (conf/study) when some run has it, else the commonest value."""
    reference = {}
    wanted = {config_key(k, set(keys)): v for k, v in flags.items()}
    for key in keys:
        values = Counter(ident.get(key) for ident in identities)
        default = study_baselines().get(display(key))
        if key in wanted:
            reference[key] = as_in_runs(wanted[key], values)
        elif stated and key in stated:
            reference[key] = as_in_runs(stated[key], values)
        elif default in values:
            reference[key] = default
        else:
            reference[key] = min(values.items(), key=lambda kv: (-kv[1], str(kv[0])))[0]
    return reference
