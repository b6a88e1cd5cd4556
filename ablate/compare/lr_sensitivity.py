"""The learning-rate sensitivity of a study run with `study.tune_lr=true`: each variant's final val loss against
the lr of its stage-1 runs (one line per variant, one plot per study), and the lr it was then trained at.

Stage-1 runs (summary.json `lr_tuning: true`) are short runs at each lr of the grid on the first seed; they are kept
out of the main tables, which compare variants at their chosen lr and full budget.

A tuning sweep rerun with another grid or budget may choose another lr: its older runs stay on disk, and the sweep's
record of its current choices (`lr_tuning/choices.json`) says which are current. A stage-2 run at an lr its sweep no
longer chooses, and a stage-1 run its current choice was not made from, are left out (said in the header), so a
variant's row never mixes lrs nor the plot budgets."""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import plotly.io as pio
from matplotlib.figure import Figure

from ablate.compare.charts import name_colours
from ablate.compare.load import Run
from ablate.sweep.tune import CHOICES, TUNING_DIR, variant_hash

DPI = 110


@dataclass
class Sensitivity:
    study: str
    losses: dict[str, dict[float, float]] = field(default_factory=dict)  # variant -> lr -> final val loss
    baseline: str | None = None  # the study's baseline (black, as in the report's other charts)

    @property
    def colours(self) -> dict[str, str]:
        return name_colours(list(self.losses), self.baseline)

    def chosen(self, variant: str) -> float | None:
        """The lr stage 2 trained `variant` at: the lowest finite loss (the smaller lr on a tie)."""
        finite = [(loss, lr) for lr, loss in self.losses[variant].items() if math.isfinite(loss)]
        return min(finite)[1] if finite else None

    @property
    def slug(self) -> str:
        """The study and scale as a file-name part: `ffn_small`."""
        return self.study.replace(" · model=", "_")

    @property
    def lrs(self) -> list[float]:
        return sorted({lr for by_lr in self.losses.values() for lr in by_lr})


def split_tuning(runs: list[Run]) -> tuple[list[Run], list[Run], list[str]]:
    """(the runs to compare, the stage-1 runs of lr tuning, what was left out as superseded: a line each)."""
    tuning = [r for r in runs if r.summary.get("lr_tuning")]
    runs = [r for r in runs if not r.summary.get("lr_tuning")]
    choices = _Choices()
    stale_final = [r for r in runs if choices.superseded(r)]
    stale_tuning = [r for r in tuning if choices.stale_stage1(r)]
    notes = []
    if stale_final:
        by_lr = Counter(f"{_lr(r):g}" for r in stale_final)
        notes.append(f"{len(stale_final)} runs left out, trained at an lr their sweep's lr tuning no longer chooses "
                     f"(the grid or budget changed; lr_tuning/{CHOICES} has the current choice): "
                     + ", ".join(f"{count} at lr {lr}" for lr, count in sorted(by_lr.items())))
    if stale_tuning:
        notes.append(f"{len(stale_tuning)} lr-tuning runs left out of the lr sensitivity section: the current "
                     f"choice was not made from them (lr_tuning/{CHOICES})")
    return ([r for r in runs if r not in stale_final], [r for r in tuning if r not in stale_tuning], notes)


def _lr(run: Run) -> float | None:
    lr = (run.config.get("train") or {}).get("lr")
    return None if lr is None else float(lr)


class _Choices:
    """Each tuning sweep's lr_tuning/choices.json, read once (None: no record, or one written before it named the
    variants' configs, which leaves every run in)."""

    def __init__(self) -> None:
        self.read: dict[Path, list[dict] | None] = {}

    def of(self, sweep_dir: Path) -> list[dict] | None:
        if sweep_dir not in self.read:
            try:
                entries = json.loads((sweep_dir / TUNING_DIR / CHOICES).read_text())
            except (OSError, ValueError):
                entries = None
            self.read[sweep_dir] = entries if isinstance(entries, list) and all(
                isinstance(e, dict) and "variant_hash" in e and "tried" in e for e in entries) else None
        return self.read[sweep_dir]

    def superseded(self, run: Run) -> bool:
        """A stage-2 run of a tuning study whose sweep now chooses another lr for its variant."""
        entries = self.of(run.dir.parent) if (run.config.get("study") or {}).get("tune_lr") else None
        if not entries or _lr(run) is None:
            return False
        identity = variant_hash(run.config)
        chosen = [e["lr"] for e in entries if e["variant_hash"] == identity]
        return bool(chosen) and chosen[0] is not None and not math.isclose(_lr(run), chosen[0])

    def stale_stage1(self, run: Run) -> bool:
        """A stage-1 run that the sweep's current choices were not made from."""
        sweep_dir = run.dir.parent.parent
        entries = self.of(sweep_dir) if run.dir.parent.name == TUNING_DIR else None
        if not entries:
            return False
        current = {str(sweep_dir / tried["run"]) for e in entries for tried in e["tried"]}
        return str(run.dir) not in current


def variant_label(run: Run) -> str:
    """The variant a stage-1 run tried, as the study names it (its option, named variant or phase)."""
    s = run.summary
    if s.get("variant") is not None:
        return str(s["variant"])
    if s.get("phase") is not None:
        return f"p{s['phase']}" if str(s["phase"]).isdigit() else str(s["phase"])
    return str(s.get(str(s.get("varies")), run.name))  # summary.json carries each family's choice at the top


def sensitivities(tuning: list[Run]) -> list[Sensitivity]:
    """One per study; a diverged run's loss is +inf, a run that did not finish is left out."""
    found: dict[str, Sensitivity] = {}
    for run in tuning:
        lr = (run.config.get("train") or {}).get("lr")
        loss = math.inf if run.status == "diverged" else run.number("final/val_loss")
        if lr is None or loss is None or run.status not in ("completed", "diverged"):
            continue
        study = f"{run.summary.get('study') or 'study'} · model={run.summary.get('model')}"  # one plot per scale
        sensitivity = found.setdefault(study, Sensitivity(study, baseline=run.summary.get("baseline")))
        sensitivity.losses.setdefault(variant_label(run), {})[float(lr)] = loss
    return [found[s] for s in sorted(found)]


def _rows(s: Sensitivity) -> list[list[str]]:
    rows = []
    for variant in sorted(s.losses):
        cells = [_loss_text(s.losses[variant].get(lr)) for lr in s.lrs]
        chosen = s.chosen(variant)
        rows.append([variant, *cells, "–" if chosen is None else f"{chosen:g}"])
    return rows


def _loss_text(loss: float | None) -> str:
    if loss is None:
        return "–"
    return "diverged" if math.isinf(loss) else f"{loss:.4f}"


def _columns(s: Sensitivity) -> list[str]:
    return ["variant", *(f"lr {lr:g}" for lr in s.lrs), "chosen lr"]


CAPTION = ("Final val loss of each variant's stage-1 runs (first seed, short budget) at each lr of study.lr_grid; "
           "the variant's seeds were then trained at its chosen lr (the lowest loss), which the `lr` column shows.")


def markdown_lines(items: list[Sensitivity]) -> list[str]:
    lines = []
    for s in items:
        columns = _columns(s)
        lines += [f"## lr sensitivity: {s.study}", "", CAPTION, "",
                  "| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in _rows(s)]
        lines.append("")
    return lines


def _points(s: Sensitivity, variant: str) -> tuple[list[float], list[float]]:
    """(lrs, losses) of the variant's finite runs, by lr."""
    pairs = sorted((lr, loss) for lr, loss in s.losses[variant].items() if math.isfinite(loss))
    return [lr for lr, _ in pairs], [loss for _, loss in pairs]


def png(s: Sensitivity, path: Path) -> Path:
    fig = Figure(figsize=(7, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for variant in sorted(s.losses):
        lrs, losses = _points(s, variant)
        ax.plot(lrs, losses, marker="o", label=variant, color=s.colours[variant])
        chosen = s.chosen(variant)
        if chosen is not None:
            ax.scatter([chosen], [s.losses[variant][chosen]], s=120, facecolors="none", edgecolors=s.colours[variant],
                       linewidths=2, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (stage 1: first seed, short budget)")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.set_title(f"{s.study}: lr sensitivity (circled: the chosen lr)", fontsize=12)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    fig.savefig(path, dpi=DPI)
    return path


def html_block(items: list[Sensitivity]) -> str:
    import plotly.graph_objects as go

    parts = []
    for s in items:
        fig = go.Figure()
        for variant in sorted(s.losses):
            lrs, losses = _points(s, variant)
            fig.add_trace(go.Scatter(x=lrs, y=losses, mode="lines+markers", name=variant,
                                     line={"color": s.colours[variant]},
                                     hovertemplate=f"{variant}: lr %{{x:g}}, loss %{{y:.4f}}<extra></extra>"))
        fig.update_layout(title={"text": f"{s.study}: lr sensitivity", "x": 0.01}, template="plotly_white",
                          height=360, xaxis_title="learning rate", yaxis_title="final validation loss",
                          xaxis_type="log")
        head = "".join(f"<th>{html.escape(c)}</th>" for c in _columns(s))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in _rows(s))
        parts.append(f'<section id="lr-{html.escape(s.slug)}"><h2>lr sensitivity: {html.escape(s.study)}</h2>'
                     f'<p class="note">{html.escape(CAPTION)}</p><div class="table-wrap"><table class="results">'
                     f'<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
                     f'{pio.to_html(fig, full_html=False, include_plotlyjs=False)}</section>')
    return "".join(parts)
