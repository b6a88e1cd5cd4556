"""Run directories written the way the trainer writes them (ablate/training/loop.py), with constructed curves:
the comparison is tested on known numbers without training anything."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import yaml

BASE_CHOICES = {"pos_enc": "learned", "attention": "mha", "ffn": "relu", "norm": "layernorm", "placement": "pre",
                "dropout": "on"}
KNOBS = {"gqa": {"n_kv_heads": 2}, "ffn": {"hidden_mult": 4.0}, "norm": {"eps": 1e-5}, "dropout": {"p": 0.1}}
# What a component node's `_target_` looks like in configs written since options name their class (older run dirs
# have none).
TARGET_OF = {"attention": "ablate.model.attention.{}", "pos_enc": "ablate.model.pos_enc.{}",
             "ffn": "ablate.model.ffn.{}", "norm": "ablate.model.norm.{}", "placement": "ablate.model.block.{}"}
TOKENS_PER_STEP = 512
INITIAL_LOSS = 5.5


def val_curve(step: int, final: float, steps: int, tau: float = 25.0) -> float:
    """Decays from INITIAL_LOSS at step 0 to exactly `final` at the last step."""
    end = math.exp(-steps / tau)
    return final + (INITIAL_LOSS - final) * (math.exp(-step / tau) - end) / (1 - end)


def write_run(run_dir: Path, final_val: float, seed: int = 0, steps: int = 100, eval_every: int = 20,
              log_every: int = 10, diverge_at: int | None = None, status: str | None = None,
              train_offset: float = 0.05, val_acc: float = 0.25, seconds_per_step: float = 0.05,
              tau: float = 25.0, targets: bool = False,
              summary_extra: dict[str, Any] | None = None, **choices: str) -> Path:
    picked = {**BASE_CHOICES, **choices}
    config = {family: {"name": option, **KNOBS.get(option, {})} for family, option in picked.items()}
    if targets:  # as configs are written now: each component node names its class
        for family, template in TARGET_OF.items():
            config[family] = {"name": config[family]["name"], "_target_": template.format(picked[family].title()),
                              **{k: v for k, v in config[family].items() if k != "name"}}
    config.update({
        "model": {"name": "tiny", "d_model": 64, "n_layers": 2, "n_heads": 4, "block_size": 64},
        "data": {"name": "stdlib", "seed": 0, "cache_dir": "/tmp/cache"}, "tokenizer": {"name": "byte"},
        "train": {"batch_size": 8, "lr": 0.003, "eval_every": eval_every, "log_every": log_every},
        "logger": {"name": "none"}, "seed": seed, "device": "cpu", "out_dir": str(run_dir),
        "debug": {"nan_at_step": diverge_at, "raise_at_step": None}, "resume": True,
    })
    extra = summary_extra or {}
    if "study" in extra:  # as ablate.train writes it: the study group in the config, its info in the summary
        config["study"] = {"name": extra["study"], "varies": extra.get("varies"), "baseline": extra.get("baseline"),
                           **({"phase": extra["phase"]} if "phase" in extra else {})}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={v}" for k, v in choices.items()]))

    rows, last_step = [], steps if diverge_at is None else diverge_at - 1
    for step in range(last_step + 1):
        tokens, time_s = step * TOKENS_PER_STEP, step * seconds_per_step
        if step and step % log_every == 0:
            rows.append({"step": step, "tokens": tokens, "time_s": time_s, "lr": 0.003,
                         "train/loss": val_curve(step, final_val, steps, tau) + train_offset,
                         "perf/tokens_per_s": TOKENS_PER_STEP / seconds_per_step})
        if step % eval_every == 0:
            loss = val_curve(step, final_val, steps, tau)
            rows.append({"step": step, "tokens": tokens, "time_s": time_s, "val/loss": loss,
                         "val/ppl": math.exp(loss), "val/acc": val_acc})
    if diverge_at is not None:
        rows.append({"step": diverge_at, "tokens": last_step * TOKENS_PER_STEP,
                     "time_s": last_step * seconds_per_step, "train/loss": "nan"})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    evals = [r["val/loss"] for r in rows if "val/loss" in r]
    trains = [r["train/loss"] for r in rows if isinstance(r.get("train/loss"), float)]
    summary = {
        "status": status or ("diverged" if diverge_at is not None else "completed"), **picked, "model": "tiny",
        "data": "stdlib", "seed": seed,
        # like the real hash: what is computed (choices, seed), not where it is recorded or which study filed it
        "config_hash": hashlib.sha256(json.dumps([picked, seed, steps, final_val]).encode()).hexdigest()[:16],
        "run_dir": str(run_dir), "overrides": ",".join(f"{k}={v}" for k, v in sorted(choices.items())),
        "params/total": 106816, "params/non_embedding": 86336, "flops_per_token": 665472,
        "final/val_loss": evals[-1], "final/val_ppl": math.exp(evals[-1]), "final/val_acc": val_acc,
        "best/val_loss": min(evals), "final/train_loss": trains[-1] if trains else None,
        "steps": last_step, "tokens": last_step * TOKENS_PER_STEP, "time_s": last_step * seconds_per_step,
        "perf/tokens_per_s": TOKENS_PER_STEP / seconds_per_step, **(summary_extra or {}),
    }
    if diverge_at is not None:
        summary["diverged_at_step"] = diverge_at
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return run_dir


ATTENTION_STUDY = {"study": "attention", "varies": "attention", "baseline": "mha"}  # what +study=attention writes


def attention_study(root: Path, study_info: bool = True) -> Path:
    """mha (baseline) / gqa clearly better / mqa within noise, 3 seeds each; one extra mqa seed diverges."""
    finals = {"mha": [4.00, 4.02, 4.01], "gqa": [3.80, 3.81, 3.79], "mqa": [4.00, 4.05, 3.98]}
    n = 0
    for option, values in finals.items():
        for seed, value in enumerate(values):
            extra = ATTENTION_STUDY if study_info else {}
            write_run(root / f"{n}_attention={option},seed={seed}", value, seed=seed, attention=option,
                      summary_extra=extra, seconds_per_step=0.05 + 0.01 * seed)
            n += 1
    extra = ATTENTION_STUDY if study_info else {}
    write_run(root / f"{n}_attention=mqa,seed=3", 4.5, seed=3, attention="mqa", diverge_at=55, summary_extra=extra)
    return root
