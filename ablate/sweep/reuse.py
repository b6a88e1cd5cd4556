"""Finished runs a ladder (or any sweep planner) can use instead of training the same computation again.

A run is the same computation as a planned job when its summary's config_hash equals the hash of the job's composed
config (ablate.track.config_hash: recording-only keys such as `study` or `out_dir` left out). So the choice a ladder
carries from one study into the next, which every later study would otherwise retrain under its own sweep dir, and
the runs of an earlier sweep (`--reuse DIR`), are found wherever they were recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablate.compare.load import find_run_dirs
from ablate.sweep.report import read_job_summary


def finished_runs(dirs: list[Path]) -> dict[str, dict[str, Any]]:
    """{config hash: summary (with `run_dir`)} of every completed run under `dirs` (searched recursively, the way
    compare finds runs)."""
    found: dict[str, dict[str, Any]] = {}
    for run_dir in find_run_dirs([str(d) for d in dirs if d.is_dir()]):
        summary = read_job_summary(run_dir / "summary.json")  # an unreadable one comes back with status `unreadable`
        if summary.get("status") == "completed" and summary.get("config_hash"):
            summary["run_dir"] = str(run_dir)
            found.setdefault(str(summary["config_hash"]), summary)
    return found


def job_hash(overrides: list[str]) -> str:
    """The config hash a job with these overrides will record."""
    from ablate import compose
    from ablate.track import config_hash

    return config_hash(compose(overrides))


def reusable_options(options: list[str], factor: str, choices: dict[str, str], seeds: list[int],
                     overrides: list[str], finished: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{option: its summaries, one per seed} for each option whose every seed has a finished run already."""
    reused = {}
    for option in options:
        base = [f"{family}={value}" for family, value in choices.items() if family != factor]
        runs = [finished.get(job_hash([*base, f"{factor}={option}", f"seed={seed}", *overrides])) for seed in seeds]
        if all(runs):
            reused[option] = runs
    return reused
