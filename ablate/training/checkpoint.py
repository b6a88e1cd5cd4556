"""Checkpoint files: written atomically, read back with `torch.load(weights_only=True)` only, and when to write.

A checkpoint holds tensors and plain Python values only (dicts, lists, tuples, str, int, float, bool, None): the
train state (`TrainState.state_dict`), the resolved config and a snapshot of the run summary. Reading never runs
code from the file: anything else in it (a pickled object, e.g. one whose pickle calls os.system) is refused with
one line naming the file, as is a truncated or corrupt file. This is the only place ablate unpickles from disk.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

# What every checkpoint written by TrainState.save holds (the config and summary snapshot come from the trainer).
REQUIRED_KEYS = ("model", "optimizer", "step", "tokens", "time_s", "rng", "batches", "config", "summary")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message is one line naming the file and what to do."""


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file and rename, so a kill at any moment leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _reason(error: BaseException) -> str:
    """The informative part of torch.load's (multi-line) refusal, on one line."""
    text = str(error)
    found = re.search(r"(Unsupported [^\n]*|Trying to load [^\n]*)", text)
    line = found.group(1) if found else next((s for s in text.splitlines() if s.strip()), type(error).__name__)
    return line.split(". ")[0].strip().rstrip(".")[:200]  # the first sentence


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, or CheckpointError (one line naming the file) if it is unsafe, corrupt or not
    one of ours."""
    fix = "delete it, or rerun with resume=false to start fresh"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing a foreign file
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load: it holds more than tensors and plain values "
                              f"({_reason(e)}), so it is not a checkpoint ablate wrote; {fix}") from None
    except Exception as e:  # noqa: BLE001 - a truncated zip, an empty file, garbage: all one clear line
        raise CheckpointError(f"{path}: cannot be read, truncated or corrupt ({type(e).__name__}: {_reason(e)}); "
                              f"{fix}") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state["summary"], dict):
        what = f"missing {', '.join(missing)}" if missing else "its summary is not a dict"
        raise CheckpointError(f"{path}: not an ablate checkpoint ({what}); {fix}")
    return state


class Checkpointer:
    """When to save: every `every` steps (none if 0 or None) before the last, and always at the end. `extra`
    gives what goes into the file besides the train state (the config and the summary as it is then)."""

    def __init__(self, path: Path, every: int | None, total_steps: int, extra: Callable[[], dict[str, Any]]):
        self.path, self.every, self.total_steps, self.extra = path, every, total_steps, extra

    def step(self, state) -> None:
        """After a training step: save if this is a checkpoint step (the last step saves in `final`)."""
        if self.every and state.step % self.every == 0 and state.step < self.total_steps:
            state.save(self.path, **self.extra())

    def final(self, state) -> None:
        state.save(self.path, **self.extra())


def keep_after_completion(checkpoints: Path, final_weights: Path, keep: str) -> None:
    """Remove what `keep` (train.keep_checkpoints, ablate.spec.KEEP_CHECKPOINTS) does not keep of a completed run:
    its summary already says completed, so nothing will resume from these files. While a run goes on its
    checkpoints are always there, so an interrupted run resumes whatever the setting."""
    if keep in ("final", "none"):
        shutil.rmtree(checkpoints, ignore_errors=True)
    if keep == "none":
        final_weights.unlink(missing_ok=True)
