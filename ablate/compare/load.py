"""Run directories in, `Run` records out. Reads only the files of the run-dir contract (never W&B).

Inputs may be run dirs, sweep dirs (searched recursively for */summary.json) or glob patterns (for shells that
did not expand them, e.g. a quoted "multirun/**/summary.json"). Each run also gets the manifest.json of the sweep
it belongs to, when there is one (the nearest one above it, up to the input folder it was found in).
"""

from __future__ import annotations

import glob
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ablate.sweep.manifest import Manifest, find_manifest, read_manifest
from ablate.track import files as track_files

class SkippedWarning(UserWarning):
    """A run, or a line of one, that compare could not read and left out (an error with --strict)."""


# Statuses from best to worst: which copy of a duplicated job to keep.
STATUS_RANK = {"completed": 0, "running": 1, "diverged": 2, "failed": 3}
# Folders inside a run dir that never hold other runs: skipped when searching recursively.
_NOT_RUNS = {"checkpoints", "wandb", ".hydra"}


@dataclass
class Run:
    dir: Path
    summary: dict[str, Any]
    config: dict[str, Any]  # the resolved config.yaml ({} when absent)
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl, numbers as floats (nan kept)
    manifest: Manifest | None = None  # the sweep's manifest.json, when it has one
    manifest_path: Path | None = None

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    @property
    def seed(self) -> Any:
        return self.summary.get("seed", self.config.get("seed"))

    @property
    def name(self) -> str:
        return self.dir.name

    def number(self, key: str) -> float | None:
        """A finite number from summary.json, falling back to the last metrics row that has it."""
        value = as_number(self.summary.get(key))
        if value is not None and math.isfinite(value):
            return value
        for row in reversed(self.rows):
            value = as_number(row.get(key))
            if value is not None and math.isfinite(value):
                return value
        return None


def as_number(value: Any) -> float | None:
    """JSON numbers and the "nan"/"inf" strings the trainer writes for non-finite values; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        return float(value)
    return None


def read_run(run_dir: Path) -> Run:
    summary = json.loads((run_dir / "summary.json").read_text())
    config_path = run_dir / "config.yaml"
    try:
        config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.exists() else {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        warnings.warn(f"{config_path}: cannot be read ({type(e).__name__}); the run is grouped by its summary",
                      SkippedWarning, stacklevel=2)
        config = {}
    return Run(dir=run_dir, summary=summary, config=config, rows=read_metrics(run_dir / "metrics.jsonl"))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl rows with the trainer's "nan"/"inf" strings turned back into floats; each line that cannot be
    read is left out and said (a curve is never cut silently)."""
    skipped: list[int] = []
    rows = track_files.read_metrics(path, skipped)
    if skipped:
        warnings.warn(f"{path}: {len(skipped)} line(s) cannot be read and were left out (line "
                      f"{', '.join(map(str, skipped[:10]))}{' …' if len(skipped) > 10 else ''})", SkippedWarning,
                      stacklevel=2)
    return [{k: (as_number(v) if isinstance(v, str) and as_number(v) is not None else v) for k, v in row.items()}
            for row in rows]


def find_run_dirs(inputs: list[str]) -> list[Path]:
    """Every run dir under the inputs, each once, in a stable order."""
    return list(_find_with_roots(inputs))


def _find_with_roots(inputs: list[str]) -> dict[Path, Path]:
    """{run dir: the folder a manifest is looked for up to}: the input folder it was found in, else (a run dir or
    a glob match given itself) its parent."""
    found: dict[Path, Path] = {}
    for item in inputs:
        path = Path(item)
        if path.exists():
            candidates = [path]
        else:
            candidates = [Path(p) for p in sorted(glob.glob(item, recursive=True))]
            if not candidates:
                raise FileNotFoundError(f"{item}: no such file, directory or glob match")
        for candidate in candidates:
            root = candidate.resolve() if candidate.is_dir() else candidate.resolve().parent
            for run_dir in _run_dirs_in(candidate):
                found.setdefault(run_dir.resolve(), root)
    return found


def _run_dirs_in(path: Path) -> list[Path]:
    if path.is_file():
        wanted = path.name == "summary.json" and path.parent.name not in _NOT_RUNS
        return [path.parent] if wanted and _is_run_summary(path) else []
    if (path / "summary.json").exists() and _is_run_summary(path / "summary.json"):
        return [path]
    runs = []
    for summary in sorted(path.rglob("summary.json")):
        if _NOT_RUNS.isdisjoint(summary.relative_to(path).parts[:-1]) and _is_run_summary(summary):
            runs.append(summary.parent)
    return runs


def _is_run_summary(path: Path) -> bool:
    """A run's summary has a status; other tools' files named summary.json do not (left out quietly). One that
    cannot be read at all is left out and said: it may be a run."""
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        warnings.warn(f"{path}: cannot be read ({type(e).__name__}: {e}); that run is left out", SkippedWarning,
                      stacklevel=2)
        return False
    return isinstance(data, dict) and "status" in data


def load_runs(inputs: list[str]) -> list[Run]:
    runs = []
    manifests: dict[Path, Manifest | None] = {}  # each file read (and a corrupt one reported) once
    for run_dir, root in _find_with_roots(inputs).items():
        run = read_run(run_dir)
        path = find_manifest(run_dir, root)
        if path is not None:
            if path not in manifests:
                manifests[path] = read_manifest(path)
            if manifests[path] is not None:
                run.manifest, run.manifest_path = manifests[path], path
        runs.append(run)
    return runs


def dedupe(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """Runs of one variant with the same config_hash (which covers the seed) are one computation recorded twice,
    e.g. a failed job re-run in another sweep, or study=all's phase 0 and a study baseline: counting both would
    inflate n. Keeps the best status, then the newest; says what it dropped."""
    kept: dict[Any, Run] = {}
    notes = []
    for run in runs:
        key = run.summary.get("config_hash") or run.dir
        if key in kept:
            best, dropped = sorted([kept[key], run], key=_preference)
            kept[key] = best
            notes.append(f"{dropped.dir.name} repeats {best.dir.name} (same config hash): counted once")
        else:
            kept[key] = run
    return list(kept.values()), notes


def _preference(run: Run) -> tuple[int, float]:
    return STATUS_RANK.get(run.status, 9), -(run.dir / "summary.json").stat().st_mtime
