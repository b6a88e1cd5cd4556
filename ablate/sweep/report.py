"""The end-of-sweep report: one row per job (choices, status, final val loss, params, tokens/s), printed as a
table and written to sweep.json in the sweep directory."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ablate.naming import MEMBER_GLOB
from ablate.spec import FAMILIES
from ablate.sweep.tune import TUNING_DIR, unchosen
from ablate.track import atomic_write


ENDED = ("completed", "diverged")  # a job that ended as recorded; anything else makes the sweep exit non-zero


def read_job_summary(path: Path) -> dict[str, Any]:
    """A job's summary.json; one that cannot be read is a row of its own with status `unreadable` and the reason,
    never a crash and never dropped."""
    try:
        summary = json.loads(path.read_text())
        if not isinstance(summary, dict) or "status" not in summary:
            raise ValueError("no status")
    except (OSError, UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        return {"status": "unreadable", "error": f"{path.name} cannot be read ({type(e).__name__}: {e})"}
    return summary


def collect_summaries(sweep_dir: Path) -> list[dict[str, Any]]:
    """The summaries of a sweep's jobs, in launch order; an ensemble job's members (train.ensemble_seeds), each a
    run of its own, in their job's place."""
    rows = []
    for path in [*sweep_dir.glob("*/summary.json"), *sweep_dir.glob(f"*/{MEMBER_GLOB}/summary.json"),
                 *sweep_dir.glob(f"{TUNING_DIR}/*/summary.json")]:
        summary = read_job_summary(path)
        summary["run_dir"] = str(path.parent)
        rows.append((_job_number(path.parent), summary))
    return [summary for _, summary in sorted(rows, key=lambda r: (r[0], r[1]["run_dir"]))]


def unfinished(rows: list[dict[str, Any]]) -> list[str]:
    """One line per job that did not end as recorded (failed, still `running` after the sweep, unreadable)."""
    return [f"{r['run_dir']}: {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
            for r in rows if r["status"] not in ENDED]


def _job_number(run_dir: Path) -> int:
    """Hydra's number for the job (hydra.job.num in .hydra/hydra.yaml; an ensemble member's: its job's); jobs
    without one sort last."""
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    if not hydra_yaml.exists():
        hydra_yaml = run_dir.parent / ".hydra" / "hydra.yaml"
    if hydra_yaml.exists():
        found = re.search(r"^    num: (\d+)$", hydra_yaml.read_text(), re.MULTILINE)
        if found:
            return int(found.group(1))
    return sys.maxsize


def _varied(rows: list[dict[str, Any]]) -> list[str]:
    """Component groups whose choice differs across jobs, then the seed; when no group differs, the overrides
    that differ say what does (e.g. the learning rates of a search)."""
    keys = [k for k in (*FAMILIES, "phase") if len({str(r.get(k)) for r in rows}) > 1]
    return [*(keys or ["differs"]), "seed"]


def _with_differing_overrides(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row plus `differs`: its overrides that not every job shares."""
    sets = [set(str(r.get("overrides", "")).split(",")) for r in rows]
    common = set.intersection(*sets) if sets else set()
    return [{**r, "differs": ",".join(sorted(s - common)) or "-"} for r, s in zip(rows, sets)]


def _format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


STATUS_STYLE = {"completed": "[green]completed", "failed": "[red]failed", "diverged": "[yellow]diverged"}


def sweep_table(rows: list[dict[str, Any]]) -> Table:
    rows = _with_differing_overrides(rows)
    keys = _varied(rows)
    table = Table(title=f"{len(rows)} jobs")
    for column in ("#", *keys, "status", "final val loss", "params", "tokens/s", "time"):
        table.add_column(column, justify="left" if column in keys or column == "status" else "right")
    for i, r in enumerate(rows):
        loss = r.get("final/val_loss")
        table.add_row(
            str(i),
            *(str(r.get(k, "-")) for k in keys),
            STATUS_STYLE.get(r["status"], r["status"]),
            f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
            f"{r['params/total']:,}" if "params/total" in r else "-",
            f"{r['perf/tokens_per_s']:,.0f}" if "perf/tokens_per_s" in r else "-",
            _format_time(r.get("time_s")),
        )
    return table


class SweepReport(Callback):
    """Hydra callback: after the last job of a multirun, print the jobs table and write sweep.json.
    Exits non-zero, after every job has run, if any job did not end completed or diverged, listing each, or if lr
    tuning left a variant without an lr (so its seeds never ran)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect_summaries(sweep_dir)
        console = Console()
        if not rows:
            console.print(f"[red]no job of this sweep wrote a summary.json under {sweep_dir}[/red]")
            sys.exit(1)
        atomic_write(sweep_dir / "sweep.json", json.dumps(rows, indent=2))
        console.print(sweep_table(rows))
        console.print(f"results: {sweep_dir} (sweep.json, one run directory per job)")
        bad, skipped = unfinished(rows), unchosen(sweep_dir)
        if skipped:
            console.print("[red]lr tuning left variants out[/red]:", *skipped, sep="\n", soft_wrap=True)
        if bad:
            console.print(f"[red]{len(bad)} of {len(rows)} jobs did not complete[/red] (error.txt in each run dir):",
                          *bad, sep="\n", soft_wrap=True)
        if bad or skipped:
            sys.exit(1)
