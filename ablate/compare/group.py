"""Runs → sections (one per study, or per varied factor) → variants (runs that differ only in seed).

With study info in summary.json (`study`, `varies`, `baseline`, `phase`) a section is a study. Without it, the
varied factor is found from which resolved-config keys differ across runs; when several differ, the runs are read
as one-factor-at-a-time studies around a reference (each run's differences from it name its section).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ablate.compare.load import Run, dedupe

FAMILIES = ("pos_enc", "attention", "ffn", "norm", "placement", "dropout")
# The baseline option of each study (DESIGN.md, "The studies this project grew from").
DESIGN_BASELINE = {"pos_enc": "learned", "attention": "mha", "ffn": "relu", "norm": "layernorm",
                   "placement": "pre", "dropout": "on"}
# Config keys that say where/how a run is recorded, which study filed it, or which repeat it is — not what is
# compared. data.seed is a repeat like seed; debug.* is fault injection (an injected NaN is a diverged seed).
IGNORED_PREFIXES = ("out_dir", "device", "logger", "hydra", "seed", "data.seed", "data.cache_dir", "debug", "study",
                    "sweep", "resume")
PHASES_TITLE = "phases"


@dataclass
class Section:
    title: str
    factors: list[str]  # display names of the keys its variants differ in, e.g. ["attention"]
    variants: dict[str, list[Run]]  # label -> runs (seeds)
    baseline: str | None = None  # label of the baseline variant
    study: str | None = None
    phases: bool = False
    notes: list[str] = field(default_factory=list)
    choices: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> its {key: value} on all keys

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.title).strip("_") or "runs"


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
    return {k: v for k, v in flat.items() if not _ignored(k)}


def _ignored(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in IGNORED_PREFIXES)


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
    return sorted(kept, key=_key_order)


def _key_order(key: str) -> tuple[int, str]:
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


def group_runs(runs: list[Run], baseline_flags: dict[str, str] | None = None) -> list[Section]:
    """Sections in a stable order: the DESIGN studies first, then phases, then anything else."""
    flags = dict(baseline_flags or {})
    by_study: dict[str, list[Run]] = defaultdict(list)
    unlabelled = []
    for run in runs:
        # a run that knows its phase but not its study belongs to the phases study
        study = run.summary.get("study") or (PHASES_TITLE if "phase" in run.summary else None)
        if study:
            by_study[str(study)].append(run)
        else:
            unlabelled.append(run)
    sections = [_study_section(name, members, runs, flags) for name, members in by_study.items()]
    if unlabelled:
        sections += _inferred_sections(unlabelled, flags)
    order = {name: i for i, name in enumerate((*FAMILIES, PHASES_TITLE))}
    return sorted(sections, key=lambda s: (order.get(s.study or s.title, len(order)), s.title))


def _study_section(name: str, runs: list[Run], all_runs: list[Run], flags: dict[str, str]) -> Section:
    if any("phase" in r.summary for r in runs):
        return _phases_section(name, runs, flags)
    varies = runs[0].summary.get("varies")
    wanted = {}
    for run in runs:  # the study's own statement of its baseline, then the flags, win over DESIGN defaults
        wanted.update(study_baseline(run.summary))
    wanted.update(flags)
    shared = _baseline_runs_elsewhere(runs, all_runs, varies, wanted)
    section = _section(name, runs + shared, wanted, study=name)
    if shared:
        section.notes.append(f"{len(shared)} baseline run(s) filed under another study are included "
                             f"(a study=all sweep runs each baseline job once): {', '.join(r.name for r in shared)}")
    declared = [str(v) for v in _as_list(varies)] if varies else []
    if declared and sorted(declared) != sorted(section.factors):  # the runs differ in more (or less) than declared
        section.notes.insert(0, f"study `{name}` declares it varies {', '.join(declared)}; its runs differ in "
                                f"{', '.join(section.factors) or 'nothing but seed'}")
    return section


def _baseline_runs_elsewhere(runs: list[Run], all_runs: list[Run], varies: Any, wanted: dict[str, str]
                             ) -> list[Run]:
    """Runs outside the study with exactly its baseline configuration: the study's runs' common settings, with the
    varied factor at its baseline option."""
    if not isinstance(varies, str):
        return []
    identities = [identity(r) for r in runs]
    known = {k for ident in identities for k in ident}
    key = config_key(varies, known)
    option = wanted.get(varies, wanted.get(key, DESIGN_BASELINE.get(varies)))
    if option is None:
        return []
    group = key.removesuffix(".name") + "." if key.endswith(".name") else None

    def other_factor(k: str) -> bool:  # a setting of the varied factor itself (its option or that option's knobs)
        return k == key or bool(group and k.startswith(group))

    common = {k: v for k, v in identities[0].items()
              if not other_factor(k) and all(ident.get(k) == v for ident in identities)}
    members = {id(r) for r in runs}
    shared = []
    for run in all_runs:
        ident = identity(run)
        if id(run) in members or ident.get(key) != option:
            continue
        rest = {k for k in ident if not other_factor(k)}
        if rest <= known and all(ident.get(k) == v for k, v in common.items()):
            shared.append(run)
    return shared


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _phases_section(name: str, runs: list[Run], flags: dict[str, str]) -> Section:
    variants: dict[str, list[Run]] = defaultdict(list)
    choices = {}
    phase_of = {}
    for run in runs:
        phase = run.summary.get("phase", "?")
        label = f"phase {phase}"
        variants[label].append(run)
        phase_of[label] = phase
        choices.setdefault(label, identity(run))
    ordered = sorted(variants, key=lambda label: _phase_number(phase_of[label]))
    stated = next((r.summary["baseline"] for r in runs if r.summary.get("baseline") is not None), None)
    wanted = flags.get("phase", stated)
    baseline = f"phase {wanted}" if wanted is not None else ordered[0]
    section = Section(title=name, factors=["phase"], variants={k: variants[k] for k in ordered}, study=name,
                      phases=True, choices=choices)
    _dedupe_variants(section)
    section.baseline = baseline if baseline in variants else None
    if section.baseline is None:
        section.notes.append(f"baseline {baseline} is not among the runs: no comparison")
    return section


def _phase_number(phase: Any) -> float:
    try:
        return float(phase)
    except (TypeError, ValueError):
        return float("inf")


def _section(title: str, runs: list[Run], wanted: dict[str, str], study: str | None = None,
             reference: dict[str, str] | None = None) -> Section:
    """One section of `runs`: variants = runs with equal values on the keys that vary among them."""
    identities = [identity(r) for r in runs]
    keys = varied_keys(identities)
    variants: dict[str, list[Run]] = defaultdict(list)
    choices = {}
    for run, ident in zip(runs, identities):
        label = label_of(ident, keys)
        variants[label].append(run)
        choices.setdefault(label, ident)
    section = Section(title=title, factors=[display(k) for k in keys], variants=dict(variants), study=study,
                      choices=choices)
    _dedupe_variants(section)
    section.baseline, note = _pick_baseline(section, keys, wanted, reference)
    if note:
        section.notes.append(note)
    return section


def _dedupe_variants(section: Section) -> None:
    for label, runs in section.variants.items():
        section.variants[label], notes = dedupe(runs)
        section.notes.extend(notes)


def _pick_baseline(section: Section, keys: list[str], wanted: dict[str, str],
                   reference: dict[str, str] | None) -> tuple[str | None, str | None]:
    if len(section.variants) < 2:
        return None, None
    known = set(keys)
    target = {k: v for k, v in (reference or {}).items() if k in known}
    for name, value in DESIGN_BASELINE.items():
        if config_key(name, known) in known:
            target.setdefault(config_key(name, known), value)
    for name, value in wanted.items():  # the study's own baseline and --baseline flags win
        if config_key(name, known) in known:
            target[config_key(name, known)] = value
    if not target:
        first = min(section.variants)
        return first, (f"no known baseline for {', '.join(section.factors)}: using {first} "
                       f"(choose with --baseline {section.factors[0]}=<option>)")
    matches = [label for label, ident in section.choices.items()
               if all(ident.get(k) == v for k, v in target.items())]
    if not matches:
        wanted_text = ", ".join(f"{display(k)}={v}" for k, v in target.items())
        return None, (f"baseline ({wanted_text}) is not among the runs: no comparison "
                      f"(choose another with --baseline {section.factors[0]}=<option>)")
    if len(matches) > 1:
        return matches[0], f"several variants match the baseline; using {matches[0]}"
    return matches[0], None


def _inferred_sections(runs: list[Run], flags: dict[str, str]) -> list[Section]:
    identities = [identity(r) for r in runs]
    keys = varied_keys(identities)
    top = [k for k in keys if not _is_knob(k, identities)]
    if len(top) <= 1:
        section = _section(display(top[0]) if top else "all runs", runs, flags)
        found = f"the varied factor ({display(top[0])}) was" if top else "nothing but the seed was"
        section.notes.append(f"no study info in summary.json: {found} found by comparing the configs")
        return [section]
    reference = _reference(top, identities, flags)
    parts: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    base_runs = []
    for run, ident in zip(runs, identities):
        differs = tuple(display(k) for k in top if ident.get(k) != reference[k])
        (parts[differs] if differs else base_runs).append(run)
    sections = []
    single = {d: members for d, members in parts.items() if len(d) == 1}
    combos = [run for d, members in parts.items() if len(d) > 1 for run in members]
    for (factor,), members in single.items():
        sections.append(_section(factor, base_runs + members, flags, reference=reference))
    if combos:
        sections.append(_section("combinations", base_runs + combos, flags, reference=reference))
    if not sections:  # only reference runs
        sections.append(_section("all runs", base_runs, flags))
    ref_text = ", ".join(f"{display(k)}={v}" for k, v in reference.items())
    for section in sections:
        section.notes.append(f"no study info in summary.json: grouped by what differs from ({ref_text})")
    return sections


def _is_knob(key: str, identities: list[dict[str, str]]) -> bool:
    """attention.n_kv_heads is a knob of the attention option; the partition into studies goes by options."""
    parent = key.rsplit(".", 1)[0] if "." in key else None
    return bool(parent) and key != f"{parent}.name" and any(f"{parent}.name" in i for i in identities)


def _reference(keys: list[str], identities: list[dict[str, str]], flags: dict[str, str]) -> dict[str, str]:
    """Per key: the --baseline value, else the DESIGN baseline when some run has it, else the commonest value."""
    reference = {}
    wanted = {config_key(k, set(keys)): v for k, v in flags.items()}
    for key in keys:
        values = Counter(ident.get(key) for ident in identities)
        design = DESIGN_BASELINE.get(display(key))
        if key in wanted:
            reference[key] = wanted[key]
        elif design in values:
            reference[key] = design
        else:
            reference[key] = min(values.items(), key=lambda kv: (-kv[1], str(kv[0])))[0]
    return reference
