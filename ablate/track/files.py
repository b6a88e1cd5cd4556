"""The run directory: the source of truth every other part (sweep, compare) reads.

config.yaml (resolved) · overrides.yaml · metrics.jsonl · summary.json · checkpoints/ · sample.txt · error.txt
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from ablate.spec import ADDED_DEFAULTS, CHANGED_DEFAULTS, RECORDING_ONLY, TARGET_KEY, at_added_default

log = logging.getLogger(__name__)


class RunDirBusy(RuntimeError):
    """Another process is writing this run dir."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Files get the mode a plain open() would give them (0644 under the usual umask 022): collaborators on a shared
# filesystem can read a run. mkstemp alone would leave them private (0600).
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers (and a kill -9) never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def config_hash(cfg: DictConfig) -> str:
    """A hash of the resolved config minus the recording-only keys and the options' classes (an option is its
    name and knobs): equal hashes mean the same computation."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in RECORDING_ONLY:
        node, last = _parent(container, key)
        node.pop(last, None)
    for node in container.values():
        if isinstance(node, dict):
            node.pop(TARGET_KEY, None)
    for key in ADDED_DEFAULTS:  # at the value runs had before the key existed: those runs keep their hash
        node, last = _parent(container, key)
        if last in node and at_added_default(key, node[last]):
            node.pop(last)
            if not node and "." not in key.partition(".")[2]:  # a whole group added since (optim: adamw)
                container.pop(key.partition(".")[0], None)
    for key, (new, before) in CHANGED_DEFAULTS.items():
        node, last = _parent(container, key)
        if last in node and node[last] == new:
            node[last] = before
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]


def _parent(container: dict, key: str) -> tuple[dict, str]:
    """The dict holding dotted `key`'s last part, and that part ({} when a parent is missing or not a dict)."""
    *parents, last = key.split(".")
    node = container
    for parent in parents:
        node = node.get(parent, {}) if isinstance(node, dict) else {}
    return (node if isinstance(node, dict) else {}), last


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan" / "inf": JSON has no literal for them
    return value


class RunFiles:
    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.dir / "checkpoints"
        self._metrics = None

    def read_summary(self) -> dict[str, Any] | None:
        """The run's summary; a corrupt one counts as none (said once), so the rerun records afresh."""
        path = self.dir / "summary.json"
        if not path.exists():
            return None
        try:
            summary = json.loads(path.read_text())
            if isinstance(summary, dict) and "status" in summary:
                return summary
        except (OSError, UnicodeDecodeError, ValueError) as e:
            log.warning("%s cannot be read (%s): it will be rewritten", path, e)
            return None
        log.warning("%s is not a run summary (no status): it will be rewritten", path)
        return None

    def is_busy(self) -> bool:
        """Whether another process holds this run dir's lock now."""
        if not (self.dir / ".lock").exists():
            return False
        with open(self.dir / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    @contextlib.contextmanager
    def lock(self):
        """Hold the run dir for one writer: a second process (the same job launched twice) is refused at once
        instead of mixing its rows, checkpoint and summary with the first's. The OS drops the lock if we die."""
        with open(self.dir / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunDirBusy(f"run dir {self.dir} is being written by {holder}; wait for it to end or give "
                                 "this run another dir") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def clear(self) -> None:
        """Remove the results of an earlier attempt that cannot be continued."""
        for name in ("metrics.jsonl", "summary.json", "error.txt", "sample.txt"):
            (self.dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    def truncate_metrics(self, last_step: int) -> None:
        """Keep the rows up to `last_step` (a checkpoint's step): later ones are logged again by the resumed run."""
        path = self.dir / "metrics.jsonl"
        if path.exists():
            kept = [row for row in read_metrics(path) if row["step"] <= last_step]
            atomic_write(path, "".join(json.dumps(row) + "\n" for row in kept))

    def write_config(self, cfg: DictConfig, overrides: list[str]) -> None:
        atomic_write(self.dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        atomic_write(self.dir / "overrides.yaml", yaml.safe_dump(list(overrides)))

    def log(self, row: dict[str, Any]) -> None:
        if self._metrics is None:
            self._metrics = open(self.dir / "metrics.jsonl", "a")
        self._metrics.write(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n")
        self._metrics.flush()

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.dir / "summary.json", json.dumps({k: _jsonable(v) for k, v in summary.items()}, indent=2))

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.dir / name, text)

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None


def load_run(path: str | os.PathLike) -> tuple[DictConfig, list[dict[str, Any]], dict[str, Any]]:
    """(resolved config, metrics rows, summary) of a run directory."""
    run_dir = Path(path)
    if not (run_dir / "summary.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no summary.json)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    return cfg, read_metrics(run_dir / "metrics.jsonl"), json.loads((run_dir / "summary.json").read_text())


def read_metrics(path: Path, skipped: list[int] | None = None) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (none if it does not exist), as written: non-finite numbers stay "nan"/"inf".
    A line that is not a JSON object (a row cut by a kill mid-write, a damaged line) is passed over, never the rows
    after it; its 1-based number is added to `skipped` for the caller to report."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
        elif skipped is not None:
            skipped.append(number)
    return rows
