"""The run summary (summary.json): typed, owning its status, serialized to the keys docs/records.md documents.

A run is `running` until it ends once: `completed`, `diverged` or `failed`; any other change is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ablate.config import choices
from ablate.naming import run_name

PATTERN_KEYS = ("attention_pattern", "pos_enc_pattern")
RUNNING, COMPLETED, DIVERGED, FAILED = "running", "completed", "diverged", "failed"
FINISHED = (COMPLETED, DIVERGED)  # rerunning these would repeat the same computation

# summary.json key <- attribute, in the order the file lists them (a public contract: never rename a key).
KEYS = {
    "model": "model", "data": "data", "seed": "seed", "config_hash": "config_hash", "run_dir": "run_dir",
    "overrides": "overrides", "attention_pattern": "attention_pattern", "pos_enc_pattern": "pos_enc_pattern",
    "wandb_id": "wandb_id",
    "params/total": "params_total", "params/non_embedding": "params_non_embedding", "params/active": "params_active",
    "flops_per_token": "flops_per_token", "device": "device", "slot": "slot", "world_size": "world_size",
    "grad_accum": "grad_accum", "compile": "compile",
    "final/val_loss": "final_val_loss", "final/val_ppl": "final_val_ppl", "final/val_acc": "final_val_acc",
    "best/val_loss": "best_val_loss", "final/val_recall_acc": "final_val_recall_acc",
    "final/train_loss": "final_train_loss", "perf/peak_mem_bytes": "peak_mem_bytes",
    "steps": "steps", "tokens": "tokens", "time_s": "time_s", "perf/tokens_per_s": "tokens_per_s",
    "diverged_at_step": "diverged_at_step", "error": "error",
}
# What a resumed run keeps from the summary saved in its checkpoint: the results so far and its W&B run.
CARRIED = ("wandb_id", "final/val_loss", "final/val_ppl", "final/val_acc", "best/val_loss", "final/val_recall_acc",
           "final/train_loss")


class StatusError(RuntimeError):
    """An illegal status change (a finished run never changes status again)."""


def study_info(cfg: DictConfig) -> dict[str, Any]:
    """Which study a job belongs to, what it varies and its baseline, for reports and dashboards to group by."""
    study = cfg.get("study")
    if not study:
        return {}
    info = OmegaConf.to_container(study, resolve=True)
    return {"study": info.get("name"), "varies": info.get("varies"), "baseline": info.get("baseline"),
            **({"phase": info["phase"]} if info.get("phase") is not None else {}),
            **({"variant": info["variant"]} if info.get("variant") is not None else {}),
            **({"lr_tuning": True} if info.get("lr_tuning") else {})}  # a stage-1 run of study.tune_lr


@dataclass
class RunSummary:
    choices: dict[str, str]  # the six component choices, e.g. {"attention": "gqa", ...}
    model: str
    data: str
    seed: int
    config_hash: str
    run_dir: str
    overrides: str
    study: dict[str, Any] = field(default_factory=dict)  # study, varies, baseline (and phase or variant), as given
    attention_pattern: list[str] | None = None  # model.attention_pattern, when set (the per-layer choices)
    pos_enc_pattern: list[str] | None = None  # model.pos_enc_pattern, when set
    wandb_id: str | None = None
    params_total: int | None = None
    params_non_embedding: int | None = None
    params_active: int | None = None
    flops_per_token: int | None = None
    device: str | None = None
    slot: int | None = None  # the device slot of hydra/launcher=gpus (sweep.slot), else absent
    world_size: int | None = None  # processes that trained it (torchrun --nproc_per_node, a SLURM job's tasks)
    grad_accum: int | None = None  # micro-batches per process per step
    compile: bool | None = None  # whether its blocks were torch.compiled (train.compile, resolved on its device)
    final_val_loss: float | None = None
    final_val_ppl: float | None = None
    final_val_acc: float | None = None
    best_val_loss: float | None = None
    final_val_recall_acc: float | None = None
    final_train_loss: float | None = None
    peak_mem_bytes: int | None = None  # CUDA only
    steps: int | None = None
    tokens: int | None = None
    time_s: float | None = None
    tokens_per_s: float | None = None
    diverged_at_step: int | None = None
    error: str | None = None
    inference: dict[str, Any] = field(default_factory=dict)  # inference/* (ablate.training.inference), at the end
    _status: str = field(default=RUNNING, repr=False)

    @classmethod
    def start(cls, cfg: DictConfig, overrides: list[str], digest: str, run_dir: Path) -> RunSummary:
        """A new run's summary: status running, its identity filled in."""
        return cls(choices=choices(cfg), model=str(cfg.model.name), data=str(cfg.data.name), seed=int(cfg.seed),
                   config_hash=digest, run_dir=str(run_dir), overrides=run_name(overrides), study=study_info(cfg),
                   slot=cfg.sweep.get("slot") if cfg.get("sweep") else None,
                   **{key: [str(entry) for entry in cfg.model.get(key)] for key in PATTERN_KEYS if cfg.model.get(key)})

    @property
    def status(self) -> str:
        return self._status

    def _end(self, status: str) -> None:
        if self._status != RUNNING:
            raise StatusError(f"a {self._status} run cannot become {status}: a run ends once, from running")
        self._status = status

    def complete(self) -> None:
        self._end(COMPLETED)

    def diverge(self, step: int) -> None:
        self._end(DIVERGED)
        self.diverged_at_step = step

    def fail(self, error: BaseException) -> None:
        self._end(FAILED)
        self.error = f"{type(error).__name__}: {error}".splitlines()[0]

    def carry_over(self, saved: dict[str, Any]) -> None:
        """Continue from the summary a checkpoint saved: its results so far and its W&B run."""
        for key in CARRIED:
            if saved.get(key) is not None:
                setattr(self, KEYS[key], saved[key])

    def record_eval(self, row: dict[str, float]) -> None:
        self.final_val_loss, self.final_val_ppl, self.final_val_acc = row["val/loss"], row["val/ppl"], row["val/acc"]
        self.best_val_loss = min(math.inf if self.best_val_loss is None else self.best_val_loss, row["val/loss"])
        if "val/recall_acc" in row:
            self.final_val_recall_acc = row["val/recall_acc"]

    def record_train(self, row: dict[str, float]) -> None:
        self.final_train_loss = row["train/loss"]

    def to_dict(self) -> dict[str, Any]:
        """summary.json: every key that has a value (study keys as given, even null)."""
        values = {key: getattr(self, attr) for key, attr in KEYS.items()}
        head = {"status": self._status, **self.choices}
        identity = {k: values.pop(k) for k in ("model", "data", "seed", "config_hash", "run_dir", "overrides")}
        return {**head, **identity, **self.study, **{k: v for k, v in values.items() if v is not None},
                **self.inference}
