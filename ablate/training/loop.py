"""One training run: validate -> data -> model -> loop (eval, checkpoints) -> sample -> summary.

The loop knows nothing of which variant it trains; everything it records goes to the run directory first and
to the logger (W&B) second.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from ablate.data import load_tokens
from ablate.model import TransformerLM, count_parameters, flops_per_token
from ablate.config import choices, validate
from ablate.spec import FAMILIES, RECORDING_ONLY, TARGET_KEY, ModelSpec, TrainSpec, key_in
from ablate.track import RunFiles, config_hash, make_logger
from ablate.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ablate.training.device import autocast, peak_flops, pick_device
from ablate.training.optim import lr_at, make_optimizer
from ablate.training.progress import progress_bar
from ablate.training.sample import generate

log = logging.getLogger(__name__)


def wandb_config(cfg: DictConfig) -> dict[str, Any]:
    """The config for W&B: each group's choice as a top-level string key (dashboards can "group by attention"),
    the choices' knobs under `knobs`, everything else as it is."""
    container = OmegaConf.to_container(cfg, resolve=True)
    knobs = {family: {k: v for k, v in container.pop(family).items() if k not in ("name", TARGET_KEY)}
             for family in FAMILIES}
    return {**container, **choices(cfg), "knobs": knobs}


def run_name(overrides: list[str]) -> str:
    """The W&B run name: the job's overrides, sorted, e.g. `attention=gqa,pos_enc=rope,seed=1`."""
    kept = (o.lstrip("+~") for o in overrides)
    return ",".join(sorted(o for o in kept if not key_in(o.split("=")[0], RECORDING_ONLY))) or "defaults"


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, device: str) -> dict[str, float]:
    """Mean next-token loss, perplexity and accuracy over the fixed val batches; targets of -100 (data=mqar: all but
    the query positions) count for neither, as cross_entropy's default ignore_index already does for the loss."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast(device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
        counted = y != -100
        correct += ((logits.argmax(-1) == y) & counted).sum().item()
        count += counted.sum().item()
    model.train()
    loss = loss_sum / count
    return {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0)), "val/acc": correct / count}


FINISHED = ("completed", "diverged")  # rerunning these would repeat the same computation


def resumable_state(files: RunFiles, digest: str) -> dict[str, Any] | None:
    """The last checkpoint of an interrupted or failed attempt at this same config, if there is one."""
    path = files.checkpoints / "last.pt"
    if not path.exists():
        return None
    state = load_checkpoint(path)
    return state if state["summary"].get("config_hash") == digest else None


def study_info(cfg: DictConfig) -> dict[str, Any]:
    """Which study a job belongs to, what it varies and its baseline, for reports and dashboards to group by."""
    study = cfg.get("study")
    if not study:
        return {}
    info = OmegaConf.to_container(study, resolve=True)
    return {"study": info.get("name"), "varies": info.get("varies"), "baseline": info.get("baseline"),
            **({"phase": info["phase"]} if info.get("phase") is not None else {})}


def throughput(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def logger_settings(cfg: DictConfig) -> dict[str, Any]:
    """The logger config, with a study's identity as W&B group / job_type / tags unless set explicitly."""
    settings = OmegaConf.to_container(cfg.logger, resolve=True)
    info = study_info(cfg)
    if info.get("study"):
        settings["group"] = settings.get("group") or f"study-{info['study']}"
        settings["job_type"] = settings.get("job_type") or str(info["study"])
        identity = (f"{k}:{info[k]}" for k in ("study", "varies", "baseline", "phase") if info.get(k) is not None)
        settings["tags"] = [*settings.get("tags", []), *identity]
    return settings


def default_run_dir() -> Path:
    now = datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train one model as `cfg` describes; returns the summary (also in <run dir>/summary.json).

    A diverging loss ends the run with status `diverged` (no exception). Any other error is recorded as `failed`
    with error.txt, then re-raised.
    """
    overrides = list(overrides or [])
    run_dir = Path(cfg.out_dir) if cfg.get("out_dir") else default_run_dir()
    files = RunFiles(run_dir)
    digest = config_hash(cfg)
    may_resume = cfg.get("resume", True)
    previous = files.read_summary()
    if may_resume and previous and previous.get("config_hash") == digest and previous["status"] in FINISHED:
        log.info("%s: already %s in %s; skipped", previous.get("overrides"), previous["status"], run_dir)
        return previous
    resume = resumable_state(files, digest) if may_resume else None
    if resume is None:
        files.clear()
    files.write_config(cfg, overrides)
    summary: dict[str, Any] = {
        **(resume["summary"] if resume else {}),
        "status": "running",
        **choices(cfg),
        "model": str(cfg.model.name),
        "data": str(cfg.data.name),
        "seed": int(cfg.seed),
        "config_hash": digest,
        "run_dir": str(run_dir),
        "overrides": run_name(overrides),
        **study_info(cfg),
    }
    files.write_summary(summary)
    logger = None
    try:
        mspec, tspec = validate(cfg)
        logger = make_logger(
            logger_settings(cfg),
            str(run_dir),
            cfg.logger.get("run_name") or run_name(overrides),
            wandb_config(cfg),
            run_id=summary.get("wandb_id"),
        )
        if logger.run_id:
            summary["wandb_id"] = logger.run_id
        _run(cfg, mspec, tspec, files, logger, summary, resume)
    except BaseException as e:
        summary["status"] = "failed"
        summary["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
        files.write_text("error.txt", traceback.format_exc())
        files.write_summary(summary)
        if logger is not None:
            logger.finish(summary, exit_code=1)
        raise
    finally:
        files.close()
    logger.finish(summary)
    return summary


def _run(
    cfg: DictConfig, mspec: ModelSpec, tspec: TrainSpec, files: RunFiles, logger, summary: dict[str, Any],
    resume: dict[str, Any] | None,
) -> None:
    device = pick_device(str(cfg.device))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))  # the previous job of a multirun is not ours
    torch.manual_seed(int(cfg.seed))
    data = load_tokens(cfg.data, cfg.tokenizer, mspec.block_size)
    log.info("data: %d train / %d val tokens (%s cache at %s)", len(data.train), len(data.val),
             "built" if data.built else "reused", data.cache_dir)

    model = TransformerLM(mspec).to(device)
    params = count_parameters(model)
    fpt = flops_per_token(model)
    summary.update({"params/total": params["total"], "params/non_embedding": params["non_embedding"],
                    "flops_per_token": fpt, "device": device})
    step_fn = torch.compile(model) if tspec.compile else model
    optimizer = make_optimizer(model, tspec, device)
    batches = data.train_batches(tspec.batch_size, mspec.block_size)  # data.sampling and data.seed decide the order
    val_batches = data.val_batches(tspec.eval_batches, tspec.batch_size, mspec.block_size)
    total_steps = tspec.total_steps(device, mspec.block_size)
    peak = peak_flops(device)
    log.info("%s: %d params (%d non-embedding), %d steps on %s -> %s",
             summary["overrides"], params["total"], params["non_embedding"], total_steps, device, files.dir)

    def record_eval(step: int, tokens: int, time_s: float) -> dict[str, float]:
        row = {"step": step, "tokens": tokens, "time_s": time_s, **evaluate(model, val_batches, device)}
        if data.reports_recall:  # data=mqar: val/acc counts query positions only, i.e. recall accuracy
            row["val/recall_acc"] = summary["final/val_recall_acc"] = row["val/acc"]
        files.log(row)
        logger.log(row)
        summary["final/val_loss"] = row["val/loss"]
        summary["final/val_ppl"] = row["val/ppl"]
        summary["final/val_acc"] = row["val/acc"]
        summary["best/val_loss"] = min(summary.get("best/val_loss", math.inf), row["val/loss"])
        return row

    def checkpoint(step: int, tokens: int, time_s: float) -> None:
        save_checkpoint(files.checkpoints / "last.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "tokens": tokens,
            "time_s": time_s, "rng": rng_state(), "batches": batches.state(),
            "config": OmegaConf.to_container(cfg, resolve=True), "summary": dict(summary),
        })

    nan_at, raise_at = cfg.debug.nan_at_step, cfg.debug.raise_at_step
    losses: list[float] = []
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        batches.load_state(resume["batches"])
        set_rng_state(resume["rng"])
        start, tokens, train_time = resume["step"], resume["tokens"], resume["time_s"]
        files.truncate_metrics(start)
        log.info("%s: resumed from the checkpoint at step %d", summary["overrides"], start)
    else:
        start, tokens, train_time = 0, 0, 0.0
        record_eval(0, 0, 0.0)
    step, warmup_tokens, warmup_time = start, tokens, train_time
    model.train()
    with progress_bar(summary["overrides"]) as progress:
        task = progress.add_task("train", total=total_steps, completed=start, loss="-",
                                 val=f"{summary['final/val_loss']:.3f}", tok_s="-")
        for step in range(start + 1, total_steps + 1):
            tic = time.perf_counter()
            lr = lr_at(step - 1, total_steps, tspec)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = batches.next()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device):
                logits = step_fn(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            if step == nan_at:
                loss = loss * float("nan")
            if step == raise_at:
                raise RuntimeError(f"debug.raise_at_step={raise_at}: injected failure")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tspec.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tspec.grad_clip)
            loss_value = loss.item()  # also synchronizes the device, so the timing below is real
            if not math.isfinite(loss_value):
                summary.update({"status": "diverged", "diverged_at_step": step})
                files.log({"step": step, "tokens": tokens, "time_s": train_time, "train/loss": loss_value})
                log.warning("%s diverged at step %d (loss %s)", summary["overrides"], step, loss_value)
                break
            optimizer.step()
            train_time += time.perf_counter() - tic
            tokens += x.numel()  # batch × sequence length (MQAR sequences may be shorter than block_size)
            losses.append(loss_value)

            if step == start + 1:  # the first step pays one-time costs (allocator, kernels, compile): not throughput
                warmup_tokens, warmup_time = tokens, train_time
            if step % tspec.log_every == 0 or step == total_steps:
                tok_s = throughput(tokens - warmup_tokens, train_time - warmup_time)
                row = {"step": step, "tokens": tokens, "time_s": train_time, "lr": lr,
                       "train/loss": sum(losses) / len(losses), "perf/tokens_per_s": tok_s}
                if peak:
                    row["perf/mfu"] = fpt * tok_s / peak
                files.log(row)
                logger.log(row)
                summary["final/train_loss"] = row["train/loss"]
                losses = []
                progress.update(task, loss=f"{row['train/loss']:.3f}", tok_s=f"{tok_s:,.0f}")
            if step % tspec.eval_every == 0 or step == total_steps:
                val = record_eval(step, tokens, train_time)
                progress.update(task, val=f"{val['val/loss']:.3f}")
            if tspec.checkpoint_every and step % tspec.checkpoint_every == 0 and step < total_steps:
                checkpoint(step, tokens, train_time)
            progress.update(task, completed=step)

    if device.startswith("cuda"):
        summary["perf/peak_mem_bytes"] = torch.cuda.max_memory_allocated(torch.device(device))
    summary.update({"steps": step if summary["status"] != "diverged" else step - 1, "tokens": tokens,
                    "time_s": train_time,
                    "perf/tokens_per_s": throughput(tokens - warmup_tokens, train_time - warmup_time)})
    if summary["status"] == "diverged":
        files.write_summary(summary)
        return
    summary["status"] = "completed"
    checkpoint(total_steps, tokens, train_time)
    if tspec.sample.tokens:
        prompt = data.tokenizer.encode(tspec.sample.prompt).tolist()
        ids = generate(model, prompt, tspec.sample.tokens, tspec.sample.temperature, tspec.sample.top_p,
                       seed=int(cfg.seed))
        text = data.tokenizer.decode(ids)
        files.write_text("sample.txt", text)
        logger.log_text("sample", text)
    files.write_summary(summary)
