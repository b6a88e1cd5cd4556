"""Does an effect transfer across scale? A study run at two or more model sizes (or token budgets) is read as one
section per scale, and a transfer table says per variant whether its effect keeps its sign and its verdict across
them (most modifications do not transfer across scale: Narang et al. 2021).
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field

from ablate.compare.group import Section, _section, _variants_section  # noqa: PLC2701  (the section builders)
from ablate.compare.keys import display, identity, study_baseline, varied_keys
from ablate.compare.load import Run
from ablate.compare.rows import VariantRow

BUDGET_KEYS = ("train.max_steps", "train.max_tokens")
# The model's size, not its knobs (model.z_loss, model.attention_pattern, ... are variants, not scales)
SIZE_KEYS = ("model.name", "model.d_model", "model.n_layers", "model.n_heads", "model.block_size")


@dataclass
class Transfer:
    study: str
    scales: list[str]  # e.g. ["model=small", "model=tiny"]
    effects: dict[str, dict[str, tuple[float | None, str]]] = field(default_factory=dict)  # variant -> scale -> (%, verdict)

    def rows(self) -> list[list[str]]:
        out = []
        for variant, by_scale in self.effects.items():
            cells = [_effect_text(*by_scale[s]) if s in by_scale else "–" for s in self.scales]
            pcts = [p for p, _ in by_scale.values() if p is not None]
            signs = {p < 0 for p in pcts if p != 0}
            verdicts = {v for _, v in by_scale.values()}
            sign = ("kept" if len(signs) == 1 else "flips") if len(pcts) == len(self.scales) else "not at every scale"
            verdict = ("same everywhere" if len(verdicts) == 1 and len(by_scale) == len(self.scales)
                       else "differs: " + ", ".join(f"{s}: {by_scale[s][1]}" for s in self.scales if s in by_scale))
            out.append([variant, *cells, sign, verdict])
        return out

    @property
    def columns(self) -> list[str]:
        return ["variant", *self.scales, "sign across scales", "verdict across scales"]


def _effect_text(pct: float | None, verdict: str) -> str:
    return f"{pct:+.2f}% ({verdict})" if pct is not None else verdict


def scale_keys(runs: list[Run]) -> list[str]:
    """The model-size and token-budget keys that differ among `runs`."""
    return [k for k in varied_keys([identity(r) for r in runs]) if k in SIZE_KEYS or k in BUDGET_KEYS]


def split_by_scale(sections: list[Section]) -> list[Section]:
    """Each study section whose runs differ in model size or budget becomes one section per scale."""
    out = []
    for section in sections:
        runs = [r for members in section.variants.values() for r in members]
        keys = [] if section.phases or section.study is None else scale_keys(runs)
        groups: dict[str, list[Run]] = defaultdict(list)
        for run in runs:
            ident = identity(run)
            groups[", ".join(f"{display(k)}={ident.get(k, '-')}" for k in keys)].append(run)
        if len(groups) < 2:
            out.append(section)
            continue
        wanted: dict[str, str] = {}
        for run in runs:
            wanted.update(study_baseline(run.summary))
        for label in sorted(groups):
            title = f"{section.title} @ {label}"
            if section.factors == ["variant"]:  # a study of named variants keeps its names at every scale
                part = _variants_section(title, groups[label], wanted)
                part.study = section.study
            else:
                part = _section(title, groups[label], wanted, study=section.study)
            part.scale = label
            out.append(part)
    return out


def transfers(sections: list[Section], tables: list[list[VariantRow]]) -> list[Transfer]:
    """One transfer table per study that was split by scale."""
    found: dict[str, Transfer] = {}
    for section, rows in zip(sections, tables):
        scale = section.scale
        if scale is None:
            continue
        transfer = found.setdefault(section.study, Transfer(section.study, []))
        transfer.scales.append(scale)
        for row in rows:
            if row.is_baseline:
                continue
            pct = row.comparison.pct if row.comparison else None
            transfer.effects.setdefault(row.label, {})[scale] = (pct, row.verdict)
    return list(found.values())


def markdown_lines(items: list[Transfer]) -> list[str]:
    lines = []
    for t in items:
        lines += [f"## transfer: {t.study}", "", "Each variant's % vs the baseline and verdict at each scale.", "",
                  "| " + " | ".join(t.columns) + " |", "|" + "|".join("---" for _ in t.columns) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows()]
        lines.append("")
    return lines


def html_block(items: list[Transfer]) -> str:
    parts = []
    for t in items:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.rows())
        parts.append(f'<section id="transfer-{html.escape(t.study)}"><h2>transfer: {html.escape(t.study)}</h2>'
                     f'<p class="meta">Each variant\'s % vs the baseline and verdict at each scale.</p>'
                     f'<div class="table-wrap"><table class="results"><thead><tr>{head}</tr></thead>'
                     f'<tbody>{body}</tbody></table></div></section>')
    return "".join(parts)

