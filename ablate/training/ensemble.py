"""`train.ensemble_seeds=[0,1,2]`: one job trains those seeds of its config in one process, as one stacked model.

Each member is the run of its seed, recorded as that run would be, in `<job dir>/seed=<k>/`: its config (`seed: k`),
config hash (train.ensemble_seeds is recording-only), metrics.jsonl, summary.json, checkpoints, final weights and
sample. So compare, skip and resume treat members as separate runs: a member already finished (same config hash, in
its own dir or in another job dir of the sweep) is skipped, an interrupted one resumes from its checkpoint (members
at different steps resume as separate groups), and a separate run of a member's seed finds it in the same way.

Each member is initialised as its separate run (`torch.manual_seed(k)`, then the model), draws its training batches
from its own stream (data.order=seed), and has its own loss, gradient clipping and AdamW state; the learning-rate
schedule is the same anyway. With dropout off, its losses equal the separate run's within float tolerance. With
dropout on, the stacked step draws every member's masks from one random stream, so a member's masks differ from
its separate run's (exact equality is impossible: SDPA draws attention dropout inside its kernel, from the global
generator). Time: each member's `time_s` is its share of the job's training time (the step's wall time / members
training), so its `perf/tokens_per_s` is the ensemble's tokens/s.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ablate.config import ensemble_override_problems, validate
from ablate.data import load_tokens
from ablate.data.batches import order_seed
from ablate.model import TransformerLM, count_parameters, flops_per_token
from ablate.naming import member_dirname, member_overrides, run_name
from ablate.spec import ModelSpec, SpecError, TrainSpec
from ablate.track import RunFiles, config_hash
from ablate.weights import FINAL_WEIGHTS
from ablate.training.checkpoint import Checkpointer, keep_after_completion
from ablate.training.device import enable_tf32, pick_device
from ablate.training.ensemble_step import make_step
from ablate.training.evaluate import Evaluator
from ablate.training.loop import (Trainer, _finish, _record_failure, default_run_dir, resumable_checkpoint,
                                  same_job_in_sweep)
from ablate.training.optim import lr_at, make_optimizer
from ablate.training.parallelize import compiles
from ablate.training.sink import MetricsSink
from ablate.training.state import TrainState, rng_state
from ablate.training.summary import COMPLETED, FINISHED, RUNNING, RunSummary

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One seed of the ensemble: its own config, overrides, hash, run dir and (while it trains) its parts."""

    seed: int
    cfg: DictConfig
    overrides: list[str]
    digest: str
    files: RunFiles
    mspec: ModelSpec
    checkpoint: dict[str, Any] | None = None
    summary: RunSummary | None = None
    sink: MetricsSink | None = None
    state: TrainState | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    trainer: Trainer | None = None


def member_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The config of the separate run of `seed` (train.ensemble_seeds kept: recording-only, it says how it ran)."""
    member = cfg.copy()
    with open_dict(member):
        member.seed = seed
        member.out_dir = None
    return member


def train_ensemble(cfg: DictConfig, overrides: list[str], hooks: list[Callable[[TrainState], None]]
                   ) -> dict[str, Any]:
    """Train every seed of train.ensemble_seeds not yet finished; returns the job's status, the mean final val loss
    over its members (what a search sweeper minimizes) and each member's summary under `members`."""
    problems = ensemble_override_problems(cfg, overrides)
    if problems:
        raise SpecError(problems)
    run_dir = Path(cfg.out_dir) if cfg.get("out_dir") else default_run_dir()
    may_resume = cfg.get("resume", True)
    members = [_member(cfg, overrides, int(seed), run_dir, may_resume) for seed in cfg.train.ensemble_seeds]
    with contextlib.ExitStack() as locks:
        for member in members:
            locks.enter_context(member.files.lock())
        pending = []
        for member in members:
            previous = member.files.read_summary()
            if may_resume and previous and previous.get("config_hash") == member.digest and \
                    previous["status"] in FINISHED:
                log.info("seed %d: already %s in %s; skipped", member.seed, previous["status"], member.files.dir)
                continue
            member.checkpoint = resumable_checkpoint(member.files, member.digest) if may_resume else None
            pending.append(member)
        steps = sorted({m.checkpoint["step"] if m.checkpoint else 0 for m in pending})
        for step in steps:  # members resumed from different steps train as separate ensembles
            _attempt([m for m in pending if (m.checkpoint["step"] if m.checkpoint else 0) == step], cfg, hooks)
    summaries = [m.files.read_summary() or {} for m in members]
    return _job_result(summaries, overrides)


def _member(cfg: DictConfig, overrides: list[str], seed: int, run_dir: Path, may_resume: bool) -> Member:
    member_cfg = member_config(cfg, seed)
    digest = config_hash(member_cfg)
    member_dir = run_dir / member_dirname(seed)
    if may_resume:
        member_dir = same_job_in_sweep(member_dir, digest, run_dir.parent) or member_dir
    with open_dict(member_cfg):
        member_cfg.out_dir = str(member_dir)
    mspec, _ = validate(member_cfg, runs_here=True)  # (its own seed: seeded structure, e.g. BigBird's blocks)
    return Member(seed, member_cfg, member_overrides(overrides, seed), digest, RunFiles(member_dir), mspec)


def _job_result(summaries: list[dict[str, Any]], overrides: list[str]) -> dict[str, Any]:
    statuses = [s.get("status") for s in summaries]
    status = next((bad for bad in ("failed", "running", "diverged") if bad in statuses), COMPLETED)
    losses = [s["final/val_loss"] for s in summaries if isinstance(s.get("final/val_loss"), (int, float))]
    return {"status": status, "overrides": run_name(overrides),
            "final/val_loss": sum(losses) / len(losses) if losses else float("nan"), "members": summaries}


def _attempt(group: list[Member], cfg: DictConfig, hooks: list[Callable[[TrainState], None]]) -> None:
    """Train one group of members (all starting at the same step) to the end; any error fails every member still
    running (error.txt and summary each) and is raised."""
    for member in group:
        member.summary = RunSummary.start(member.cfg, member.overrides, member.digest, member.files.dir)
    try:
        for member in group:
            if member.checkpoint is None:
                member.files.clear()
            else:
                member.summary.carry_over(member.checkpoint["summary"])
            member.files.write_config(member.cfg, member.overrides)
            member.files.write_summary(member.summary.to_dict())
        data = load_tokens(cfg.data, cfg.tokenizer, group[0].mspec.block_size)
        for member in group:
            member.sink = MetricsSink.open(member.files, member.cfg, member.overrides, member.summary.wandb_id,
                                           concurrent=True)
            member.summary.wandb_id = member.sink.run_id or member.summary.wandb_id
        _run(group, cfg, data, hooks)
    except BaseException as e:
        for member in group:
            if member.summary.status == RUNNING:
                member.summary.fail(e)
            _record_failure(member.files, member.summary)
            if member.sink is not None:
                member.sink.finish(member.summary.to_dict(), exit_code=1)
        raise
    finally:
        for member in group:
            member.files.close()
    for member in group:
        member.sink.finish(member.summary.to_dict())


def _build(member: Member, cfg: DictConfig, tspec: TrainSpec, data, device: str) -> None:
    """Member's model exactly as its separate run builds it, its batches, optimizer and (resuming) its state."""
    torch.manual_seed(member.seed)
    model = TransformerLM(member.mspec).to(device)
    params, summary = count_parameters(model), member.summary
    summary.params_total, summary.params_non_embedding = params["total"], params["non_embedding"]
    summary.params_active, summary.flops_per_token, summary.device = params["active"], flops_per_token(model), device
    summary.world_size, summary.grad_accum, summary.compile = 1, tspec.grad_accum, compiles(tspec, device)
    data.seed = order_seed(cfg.data.seed, member.seed, str(cfg.data.get("order", "seed")))
    member.state = TrainState(model, make_optimizer(model, tspec, device),
                              data.train_batches(tspec.batch_size, member.mspec.block_size))
    if member.checkpoint is not None:
        member.state.load_state_dict(member.checkpoint)
        member.files.truncate_metrics(member.state.step)
    member.rng = rng_state()


def _run(group: list[Member], cfg: DictConfig, data, hooks: list[Callable[[TrainState], None]]) -> None:
    tspec = validate(cfg, runs_here=True)[1]
    device = pick_device(str(cfg.device))
    enable_tf32(device)
    for member in group:
        _build(member, cfg, tspec, data, device)
    block = group[0].mspec.block_size
    total = tspec.total_steps(device, block)
    evaluator = Evaluator(data.val_batches(tspec.eval_batches, tspec.batch_size, block), device, data.reports_recall)
    for member in group:
        extra = (lambda m: lambda: {"config": OmegaConf.to_container(m.cfg, resolve=True),
                                    "summary": m.summary.to_dict()})(member)
        member.trainer = Trainer(member.state, member.state.model, tspec, total, device, evaluator,
                                 Checkpointer(member.files.checkpoints / "last.pt", tspec.checkpoint_every, total,
                                              extra), member.sink, member.summary, [])
    step, why = make_step([m.state for m in group], tspec, device, [m.rng for m in group])
    seeds = [m.seed for m in group]
    log.info("ensemble of seeds %s: %s, %d steps on %s", seeds,
             f"members one after another ({why})" if why else "one stacked model", total, device)
    if all(m.checkpoint is None for m in group):
        for member in group:
            member.trainer.evaluate()  # step 0
    step = _train_steps(group, step, tspec, total, seeds, hooks)
    for member in group:
        summary, state = member.summary, member.state
        summary.steps, summary.tokens, summary.time_s = state.step, state.tokens, state.time_s
        summary.tokens_per_s = member.trainer.throughput.rate(state)
        if summary.status == RUNNING:
            step.activate(next(i for i, s in enumerate(step.states) if s is state))  # its own random stream
            member.trainer.checkpointer.final(state)
            _finish(member.cfg, tspec, state.model, device, data, member.files, member.sink, summary)
            summary.complete()
        member.files.write_summary(summary.to_dict())
        if summary.status == COMPLETED:
            keep_after_completion(member.files.checkpoints, member.files.dir / FINAL_WEIGHTS,
                                  tspec.keep_checkpoints)


def _train_steps(group: list[Member], step_impl, tspec: TrainSpec, total: int, seeds: list[int],
                 hooks: list[Callable[[TrainState], None]]):
    """The step loop; a member whose loss is not finite ends `diverged` before its update, the others go on.
    Returns the step implementation of the members still training (exported: their models hold the weights), None
    if none is."""
    active = list(group)
    while active and active[0].state.step < total:
        step = active[0].state.step + 1
        lr = lr_at(step - 1, total, tspec)
        step_impl.set_lr(lr)
        batches = [m.state.batches.next() for m in active]
        tic = time.perf_counter()
        values = step_impl.forward_backward(batches)
        bad = {i for i, v in enumerate(values) if not all(torch.isfinite(t).all() for t in v.values())}
        if bad:
            for i in sorted(bad):
                active[i].trainer.diverged(step, {key: float(v) for key, v in values[i].items()})
            active = [m for i, m in enumerate(active) if i not in bad]
            if not active:
                return None
            step_impl = step_impl.without(bad)
            batches = [b for i, b in enumerate(batches) if i not in bad]
            values = step_impl.forward_backward(batches)
        step_impl.step()
        seconds = (time.perf_counter() - tic) / len(active)  # each member's share of the step
        for member, member_values, batch in zip(active, values, batches):
            member.state.advance(batch[0].numel(), seconds)
            member.trainer.throughput.update(member.state)
            member.trainer.meter.add(member_values)
        evaluates = step % tspec.eval_every == 0 or step == total
        saves = tspec.checkpoint_every and step % tspec.checkpoint_every == 0 and step < total
        if evaluates or saves:
            step_impl.export()
        for i, member in enumerate(active):
            if step % tspec.log_every == 0 or step == total:
                member.trainer.log_train(lr)
            if evaluates:
                member.trainer.evaluate()
            step_impl.activate(i)
            member.trainer.checkpointer.step(member.state)
        for hook in hooks:  # (tests: a fault at an exact step)
            hook(active[0].state)
        if step % tspec.log_every == 0 or step == total:
            log.info("seeds %s step %d/%d: train loss %s", seeds, step, total,
                     " ".join(f"{m.summary.final_train_loss:.4f}" for m in active))
    step_impl.export()
    return step_impl
