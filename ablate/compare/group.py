"""Runs → sections (one per study, or per varied factor) → variants (runs that differ only in seed).

With study info in summary.json (`study`, `varies`, `baseline`, `phase`) a section is a study. Without it, the
sweep's manifest.json (ablate.sweep.manifest) says which factor(s) it varies and their baseline (an ad-hoc sweep's:
the first option given). Without either, the varied factor is found from which resolved-config keys differ across
runs. When several factors vary, the runs are read as one-factor-at-a-time studies around a reference (each run's
differences from it name its section).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.compare.keys import (  # noqa: F401  (identity, varied_keys, flatten: the public names of grouping)
    as_in_runs,
    config_key,
    display,
    flatten,
    identity,
    is_knob,
    key_order,
    label_of,
    parse_assignments,
    reference_of,
    study_baseline,
    study_baselines,
    varied_keys,
)
from ablate.compare.load import Run, dedupe
from ablate.spec import FAMILIES
from ablate.sweep.manifest import Manifest

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
    scale: str | None = None  # a study run at several sizes: this section's (ablate.compare.transfer)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.title).strip("_") or "runs"


def group_runs(runs: list[Run], baseline_flags: dict[str, str] | None = None) -> list[Section]:
    """Sections in a stable order: the component studies first, then phases, then anything else."""
    flags = dict(baseline_flags or {})
    by_study: dict[str, list[Run]] = defaultdict(list)
    by_manifest: dict[Any, list[Run]] = defaultdict(list)  # one ad-hoc sweep each
    unlabelled = []
    for run in runs:
        # a run that knows its phase but not its study belongs to the phases study
        study = run.summary.get("study") or (PHASES_TITLE if "phase" in run.summary else None)
        if study:
            by_study[str(study)].append(run)
        elif run.manifest is not None:
            by_manifest[run.manifest_path or id(run.manifest)].append(run)
        else:
            unlabelled.append(run)
    sections = [_study_section(name, members, runs, flags) for name, members in by_study.items()]
    for members in by_manifest.values():
        sections += _manifest_sections(members, members[0].manifest, members[0].manifest_path, flags)
    if unlabelled:
        sections += _inferred_sections(unlabelled, flags)
    order = {name: i for i, name in enumerate((*FAMILIES, PHASES_TITLE))}
    return sorted(sections, key=lambda s: (order.get(s.study or s.title, len(order)), s.title))


def _study_section(name: str, runs: list[Run], all_runs: list[Run], flags: dict[str, str]) -> Section:
    if any("phase" in r.summary for r in runs):
        return _phases_section(name, runs, flags)
    if any("variant" in r.summary for r in runs):
        return _variants_section(name, runs, flags)
    varies = runs[0].summary.get("varies")
    wanted = {}
    for run in runs:  # the study's own statement of its baseline, then the flags, win over conf/study's
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
    option = wanted.get(varies, wanted.get(key, study_baselines().get(varies)))
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


def _variants_section(name: str, runs: list[Run], flags: dict[str, str]) -> Section:
    """A study of named variants (`study.variants`, e.g. +study=modern): each variant is its name, whatever
    overrides make it; the baseline is the study's (or --baseline variant=<name>)."""
    variants: dict[str, list[Run]] = defaultdict(list)
    choices = {}
    for run in runs:
        label = str(run.summary.get("variant", "?"))
        variants[label].append(run)
        choices.setdefault(label, identity(run))
    stated = next((str(r.summary["baseline"]) for r in runs if r.summary.get("baseline") is not None), None)
    wanted = flags.get("variant", stated)
    section = Section(title=name, factors=["variant"], variants=dict(variants), study=name, choices=choices)
    _dedupe_variants(section)
    section.baseline = wanted if wanted in variants else None
    if section.baseline is None:
        section.notes.append(f"baseline {wanted} is not among the runs: no comparison "
                             f"(choose another with --baseline variant=<name>)")
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
    for name, value in study_baselines().items():
        if config_key(name, known) in known:
            target.setdefault(config_key(name, known), value)
    for name, value in wanted.items():  # the study's own baseline and --baseline flags win
        if config_key(name, known) in known:
            target[config_key(name, known)] = value
    target = {k: as_in_runs(v, {ident.get(k) for ident in section.choices.values()}) for k, v in target.items()}
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
    """Runs with neither study info nor a manifest: the varied factors are found from the configs."""
    identities = [identity(r) for r in runs]
    keys = varied_keys(identities)
    top = [k for k in keys if not is_knob(k, identities)]
    if len(top) <= 1:
        section = _section(display(top[0]) if top else "all runs", runs, flags)
        found = f"the varied factor ({display(top[0])}) was" if top else "nothing but the seed was"
        section.notes.append(f"no study info in summary.json: {found} found by comparing the configs")
        return [section]
    reference = reference_of(top, identities, flags)
    sections = _partition(runs, identities, top, reference, flags)
    ref_text = ", ".join(f"{display(k)}={v}" for k, v in reference.items())
    for section in sections:
        section.notes.append(f"no study info in summary.json: grouped by what differs from ({ref_text})")
    return sections


def _partition(runs: list[Run], identities: list[dict[str, str]], top: list[str], reference: dict[str, str],
               flags: dict[str, str], titles: dict[str, str] | None = None) -> list[Section]:
    """One-factor-at-a-time sections around `reference`: a run that differs from it in one factor goes to that
    factor's section, in several to `combinations`; the reference runs are the baseline of every section."""
    titles = titles or {}
    parts: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    base_runs = []
    for run, ident in zip(runs, identities):
        differs = tuple(k for k in top if ident.get(k) != reference[k])
        (parts[differs] if differs else base_runs).append(run)
    sections = []
    single = {d: members for d, members in parts.items() if len(d) == 1}
    combos = [run for d, members in parts.items() if len(d) > 1 for run in members]
    for (key,), members in single.items():
        title = titles.get(key, display(key))
        sections.append(_section(title, base_runs + members, flags, reference=reference))
    if combos:
        sections.append(_section("combinations", base_runs + combos, flags, reference=reference))
    if not sections:  # only reference runs
        sections.append(_section("all runs", base_runs, flags))
    return sections


def _manifest_sections(runs: list[Run], manifest: Manifest, path: Path | None, flags: dict[str, str]
                       ) -> list[Section]:
    """Runs without study info under a sweep whose manifest.json names what it varies and its baseline: the
    manifest's factors and baselines, not guesses from the configs (flags still win)."""
    identities = [identity(r) for r in runs]
    known = {k for ident in identities for k in ident}
    declared: dict[str, tuple[str | None, str | None]] = {}  # config key -> (study name, baseline option)
    for entry in manifest.studies:
        for name in entry.varies:
            key = config_key(name, known)
            if key in known:
                declared.setdefault(key, (entry.name, entry.baseline.get(name)))
    source = path or "manifest.json"
    if not declared:
        sections = _inferred_sections(runs, flags)
        for section in sections:
            section.notes.append(f"{source} names no factor these runs have: ignored")
        return sections
    found = [k for k in varied_keys(identities) if not is_knob(k, identities)]
    top = sorted(set(declared) | set(found), key=key_order)
    stated = {k: option for k, (_, option) in declared.items() if option is not None}
    reference = reference_of(top, identities, flags, stated)
    titles = {k: study or display(k) for k, (study, _) in declared.items()}
    if len(top) == 1:
        sections = [_section(titles[top[0]], runs, flags, study=declared[top[0]][0], reference=reference)]
    else:
        sections = _partition(runs, identities, top, reference, flags, titles)
    flagged = {config_key(k, set(top)) for k in flags}
    undeclared = [display(k) for k in found if k not in declared]
    for section in sections:
        section.notes.append(f"no study info in summary.json: what varies and its baseline are from {source}")
        if undeclared:
            section.notes.append(f"the sweep's manifest declares it varies {', '.join(display(k) for k in declared)}"
                                 f"; its runs also differ in {', '.join(undeclared)}")
        if len(section.variants) < 2:
            continue
        keys = [k for k in top if display(k) in section.factors or section.title == titles.get(k)]
        for key in keys:
            study, option = declared.get(key, (None, None))
            if option is None:
                continue
            factor = display(key)
            if key in flagged:
                section.notes.append(f"baseline {reference[key]}: from --baseline (the sweep's manifest.json "
                                     f"says {option})")
                continue
            origin = f"the baseline of study {study}" if study else "the first option of the sweep"
            section.notes.append(f"baseline {option}: {origin} (manifest.json); choose another with "
                                 f"--baseline {factor}=<option>")
    return sections
