"""The end-of-sweep report: one row per job (choices, status, final val loss, params, tokens/s), printed as a
table and written to sweep.json in the sweep directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ablate.spec import FAMILIES
from ablate.track import atomic_write


def collect_summaries(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: _job_number(p.parent.name)):
        summary = json.loads(path.read_text())
        summary["run_dir"] = str(path.parent)
        rows.append(summary)
    return rows


def _job_number(name: str) -> tuple[int, str]:
    head = name.split("_", 1)[0]
    return (int(head), name) if head.isdigit() else (sys.maxsize, name)


def _varied(rows: list[dict[str, Any]]) -> list[str]:
    """Component groups whose choice differs across jobs (all groups when nothing differs)."""
    keys = [k for k in (*FAMILIES, "seed") if len({str(r.get(k)) for r in rows}) > 1]
    return keys or list(FAMILIES)


def sweep_table(rows: list[dict[str, Any]]) -> Table:
    keys = _varied(rows)
    table = Table(title=f"{len(rows)} jobs")
    for column in ("#", *keys, "status", "final val loss", "params", "tokens/s"):
        table.add_column(column, justify="right" if column not in keys and column != "status" else "left")
    for i, r in enumerate(rows):
        loss = r.get("final/val_loss")
        table.add_row(
            str(i),
            *(str(r.get(k, "-")) for k in keys),
            {"completed": "[green]completed", "failed": "[red]failed", "diverged": "[yellow]diverged"}.get(
                r["status"], r["status"]),
            f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
            f"{r['params/total']:,}" if "params/total" in r else "-",
            f"{r['perf/tokens_per_s']:,.0f}" if "perf/tokens_per_s" in r else "-",
        )
    return table


class SweepReport(Callback):
    """Hydra callback: after the last job of a multirun, print the jobs table and write sweep.json.
    Exits non-zero if any job failed, after every job has run."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect_summaries(sweep_dir)
        if not rows:
            return
        atomic_write(sweep_dir / "sweep.json", json.dumps(rows, indent=2))
        console = Console()
        console.print(sweep_table(rows))
        console.print(f"results: {sweep_dir} (sweep.json, one run directory per job)")
        failed = [r for r in rows if r["status"] == "failed"]
        if failed:
            console.print(f"[red]{len(failed)} of {len(rows)} jobs failed[/red]: see error.txt in " +
                          ", ".join(r["run_dir"] for r in failed))
            sys.exit(1)
