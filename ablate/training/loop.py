"""One training run: validate -> data -> model -> parallelize -> the step loop (eval, checkpoints) -> sample.

The parts: `TrainState` (what a checkpoint holds; one call to save or load), `Evaluator` (the fixed val batches),
`Checkpointer` (when to save), `MetricsSink` (run dir first, W&B second), `RunSummary` (summary.json and its
status) and `parallelize` (compile per block, DDP). The loop knows nothing of which variant it trains. In a run of
several processes (`distributed`) every process runs this same code on its share of each batch; rank 0 alone
writes.
"""

from __future__ import annotations

import logging
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from omegaconf import DictConfig, OmegaConf

from ablate.config import validate
from ablate.data import load_tokens
from ablate.data.batches import order_seed
from ablate.model import TransformerLM, count_parameters, flops_per_token
from ablate.naming import MEMBER_GLOB
from ablate.spec import ModelSpec, TrainSpec
from ablate.sweep.manifest import FILENAME as MANIFEST
from ablate.track import NullLogger, RunFiles, config_hash
from ablate.training import distributed
from ablate.training.checkpoint import Checkpointer, keep_after_completion, read_checkpoint
from ablate.weights import FINAL_WEIGHTS, save_final_weights
from ablate.training.device import enable_tf32, peak_flops, pick_device
from ablate.training.evaluate import Evaluator
from ablate.training.inference import inference_costs
from ablate.training.optim import lr_at, make_optimizer, set_lr
from ablate.training.parallelize import compiles, parallelize
from ablate.training.progress import progress_display
from ablate.training.sample import generate, sample_file, sample_prompt
from ablate.training.sink import MetricsSink
from ablate.training.state import TrainState
from ablate.training.step import DivergenceGuard, LossMeter, Throughput, forward_backward
from ablate.training.summary import COMPLETED, FINISHED, RUNNING, RunSummary

log = logging.getLogger(__name__)

Hook = Callable[[TrainState], None]


def default_run_dir() -> Path:
    now = datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")


def resumable_checkpoint(files: RunFiles, digest: str) -> dict[str, Any] | None:
    """The last checkpoint of an interrupted or failed attempt at this same config, if there is one
    (CheckpointError if there is one but it is unsafe or corrupt: never a silent fresh start)."""
    path = files.checkpoints / "last.pt"
    if not path.exists():
        return None
    checkpoint = read_checkpoint(path)
    return checkpoint if checkpoint["summary"].get("config_hash") == digest else None


def train(cfg: DictConfig, overrides: list[str] | None = None, *, hooks: Iterable[Hook] = ()) -> dict[str, Any]:
    """Train one model as `cfg` describes; returns the summary (also in <run dir>/summary.json).

    A config error is refused (SpecError, one line per problem) before anything is written. A diverging loss ends
    the run with status `diverged` (no exception). Any other error is recorded as `failed` with error.txt, then
    re-raised.

    `hooks` are called with the train state after every step. They exist for tests: an exception raised in one
    fails the run at an exact step while the config, and so the config hash, stays that of the run that resumes
    it (a fault set in the config would change the hash; a kill -9 lands at no exact step).
    """
    overrides = list(overrides or [])
    mspec, tspec = validate(cfg, runs_here=True)  # nothing exists yet: no run dir, cache, model or W&B run
    if tspec.ensemble_seeds is not None:  # several seeds in one process, each its own run dir
        from ablate.training.ensemble import train_ensemble

        return train_ensemble(cfg, overrides, list(hooks))
    if distributed.world_size() > 1:  # every process runs rank 0's job (its config, overrides and run dir)
        distributed.start(pick_device(str(cfg.device)))
        job = distributed.share((OmegaConf.to_container(cfg, resolve=True), overrides))
        if not distributed.is_main():
            cfg, overrides = OmegaConf.create(job[0]), job[1]
            mspec, tspec = validate(cfg, runs_here=True)
    digest = config_hash(cfg)
    may_resume = cfg.get("resume", True)
    run_dir = distributed.on_main(lambda: choose_run_dir(cfg, digest, may_resume))
    files = RunFiles(run_dir) if distributed.is_main() else distributed.ReadOnlyFiles(run_dir)
    with files.lock():
        previous = distributed.on_main(files.read_summary)
        if may_resume and previous and previous.get("config_hash") == digest and previous["status"] in FINISHED:
            log.info("%s: already %s in %s; skipped", previous.get("overrides"), previous["status"], run_dir)
            summary = previous
        else:
            summary = _attempt(cfg, overrides, mspec, tspec, files, digest, may_resume, list(hooks))
    distributed.finish()  # no process leaves while rank 0 still writes; the group ends in every process together
    return summary


def choose_run_dir(cfg: DictConfig, digest: str, may_resume: bool) -> Path:
    run_dir = Path(cfg.out_dir) if cfg.get("out_dir") else default_run_dir()
    return (same_job_in_sweep(run_dir, digest) or run_dir) if may_resume else run_dir


def same_job_in_sweep(run_dir: Path, digest: str, sweep_dir: Path | None = None) -> Path | None:
    """Another job dir of the same sweep (a dir with ablate's manifest.json) that holds this very computation, when
    this job's own dir does not: skipping and resuming follow the config hash, not the job dir's name (which
    changes when, say, `seed=0,1,2` is added to a finished sweep's command). A finished one is skipped; an
    interrupted one no process holds is continued; one being written right now is left to its writer. The run dirs
    of ensemble jobs' members (`<job dir>/seed=<k>`) count as job dirs; a member's `sweep_dir` is its job's parent."""
    sweep_dir = sweep_dir or run_dir.parent
    own = RunFiles(run_dir).read_summary() if run_dir.exists() else None
    if not (sweep_dir / MANIFEST).exists() or (own and own.get("config_hash") == digest):
        return None
    candidates = []
    found_summaries = [*sweep_dir.glob("*/summary.json"), *sweep_dir.glob(f"*/{MEMBER_GLOB}/summary.json")]
    for path in sorted(found_summaries):  # its own dir is among them only with another hash
        files = RunFiles(path.parent)
        summary = files.read_summary()
        if summary and summary.get("config_hash") == digest and not files.is_busy():
            candidates.append((summary["status"] not in FINISHED, path.parent))
    if not candidates:
        return None
    found = min(candidates)[1]  # a finished one first
    log.info("%s already holds this job's computation (same config hash): it is used instead of %s", found,
             run_dir.name)
    return found


def _attempt(cfg: DictConfig, overrides: list[str], mspec: ModelSpec, tspec: TrainSpec, files: RunFiles,
             digest: str, may_resume: bool, hooks: list[Hook]) -> dict[str, Any]:
    summary = RunSummary.start(cfg, overrides, digest, files.dir)
    sink = None
    try:
        checkpoint = resumable_checkpoint(files, digest) if may_resume else None
        if checkpoint is None:
            files.clear()
        else:
            summary.carry_over(checkpoint["summary"])
        files.write_config(cfg, overrides)
        files.write_summary(summary.to_dict())
        torch.manual_seed(int(cfg.seed))
        # data errors come before a W&B run starts; rank 0 first: it builds the token cache, the others read it
        data = distributed.main_first(lambda: load_tokens(cfg.data, cfg.tokenizer, mspec.block_size))
        data.seed = order_seed(cfg.data.seed, cfg.seed, str(cfg.data.get("order", "seed")))  # paired seeds
        sink = MetricsSink.open(files, cfg, overrides, summary.wandb_id) if distributed.is_main() else \
            MetricsSink(files, NullLogger())
        summary.wandb_id = sink.run_id or summary.wandb_id
        _run(cfg, mspec, tspec, data, files, sink, summary, checkpoint, hooks)
    except BaseException as e:
        if summary.status == RUNNING:  # an error after the run ended (writing its files) keeps that ending
            summary.fail(e)
        _record_failure(files, summary)
        if sink is not None:
            sink.finish(summary.to_dict(), exit_code=1)
        raise
    finally:
        files.close()
    sink.finish(summary.to_dict())
    return summary.to_dict()


def _record_failure(files: RunFiles, summary: RunSummary) -> None:
    """error.txt and the failed summary; if even that cannot be written (a full disk), say so in the log: the
    exception still ends the process non-zero."""
    try:
        files.write_text("error.txt", traceback.format_exc())
        files.write_summary(summary.to_dict())
    except OSError as e:
        log.error("could not record the failure in %s (%s): the run's summary.json is out of date", files.dir, e)


def _run(cfg: DictConfig, mspec: ModelSpec, tspec: TrainSpec, data, files: RunFiles, sink: MetricsSink,
         summary: RunSummary, checkpoint: dict[str, Any] | None, hooks: list[Hook]) -> None:
    device = distributed.start(pick_device(str(cfg.device)))  # a process's own GPU in a run of several
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))  # the previous job of a multirun is not ours
    enable_tf32(device)
    log.info("data: %d train / %d val tokens (%s cache at %s)", len(data.train), len(data.val),
             "built" if data.built else "reused", data.cache_dir)

    model = TransformerLM(mspec).to(device)
    distributed.seed_rank(int(cfg.seed))
    params = count_parameters(model)
    summary.params_total, summary.params_non_embedding = params["total"], params["non_embedding"]
    summary.params_active, summary.flops_per_token, summary.device = params["active"], flops_per_token(model), device
    summary.world_size, summary.grad_accum = distributed.world_size(), tspec.grad_accum
    summary.compile = compiles(tspec, device)
    state = TrainState(model, make_optimizer(model, tspec, device), data.train_batches(tspec.batch_size,
                                                                                        mspec.block_size))
    total_steps = tspec.total_steps(device, mspec.block_size)
    log.info("%s: %d params (%d non-embedding), %d steps on %s -> %s",
             summary.overrides, params["total"], params["non_embedding"], total_steps, device, files.dir)
    if checkpoint is not None:
        state.load_state_dict(checkpoint)
        files.truncate_metrics(state.step)
        log.info("%s: resumed from the checkpoint at step %d", summary.overrides, state.step)
    trainer = Trainer(
        state, parallelize(model, tspec, device), tspec, total_steps, device,
        Evaluator(data.val_batches(tspec.eval_batches, tspec.batch_size, mspec.block_size), device,
                  data.reports_recall),
        Checkpointer(files.checkpoints / "last.pt", tspec.checkpoint_every, total_steps,
                     lambda: {"config": OmegaConf.to_container(cfg, resolve=True), "summary": summary.to_dict()}),
        sink, summary, hooks,
    )
    if checkpoint is None:
        trainer.evaluate()  # step 0
    trainer.run()

    if device.startswith("cuda"):
        summary.peak_mem_bytes = torch.cuda.max_memory_allocated(torch.device(device))
    summary.steps, summary.tokens, summary.time_s = state.step, state.tokens, state.time_s
    summary.tokens_per_s = trainer.throughput.rate(state)
    if summary.status == RUNNING:
        trainer.checkpointer.final(state)
        if distributed.is_main():
            _finish(cfg, tspec, model, device, data, files, sink, summary)
        summary.complete()
    files.write_summary(summary.to_dict())
    if summary.status == COMPLETED and distributed.is_main():
        keep_after_completion(files.checkpoints, files.dir / FINAL_WEIGHTS, tspec.keep_checkpoints)


def _finish(cfg: DictConfig, tspec: TrainSpec, model: TransformerLM, device: str, data, files: RunFiles,
            sink: MetricsSink, summary: RunSummary) -> None:
    """After the last step, on rank 0: the final weights, the inference costs and the sample."""
    save_final_weights(model, files.dir)  # model.safetensors: what load_model and the exporter read
    summary.inference = inference_costs(model, device, tspec.inference)
    if tspec.sample.tokens:
        prompt, source = sample_prompt(tspec.sample.prompt, data.val, data.tokenizer)
        ids = generate(model, data.tokenizer.encode(prompt).tolist(), tspec.sample.tokens,
                       tspec.sample.temperature, tspec.sample.top_p, seed=int(cfg.seed))
        sink.text("sample", sample_file(prompt, source, data.tokenizer.decode(ids)))


class Trainer:
    """The step loop over a TrainState (already resumed, if it resumes), with the parts it calls."""

    def __init__(self, state: TrainState, step_fn: torch.nn.Module, tspec: TrainSpec, total_steps: int,
                 device: str, evaluator: Evaluator, checkpointer: Checkpointer, sink: MetricsSink,
                 summary: RunSummary, hooks: list[Hook]):
        self.state, self.step_fn, self.tspec, self.total_steps, self.device = state, step_fn, tspec, total_steps, device
        self.evaluator, self.checkpointer, self.sink, self.summary = evaluator, checkpointer, sink, summary
        self.hooks, self.meter, self.throughput = hooks, LossMeter(), Throughput(state)
        self.guard = DivergenceGuard(state.optimizer, device)
        peak = peak_flops(device)
        self.fpt, self.peak = summary.flops_per_token, peak and peak * distributed.world_size()  # all devices'

    def run(self) -> None:
        """Steps state.step + 1 … total_steps; a non-finite loss ends the run `diverged` before its update."""
        state, spec = self.state, self.tspec
        with progress_display(self.summary.overrides, self.total_steps, state.step,
                              self.summary.final_val_loss) as progress:
            while state.step < self.total_steps:
                step, tic = state.step + 1, time.perf_counter()
                lr = set_lr(state.optimizer, lr_at(step - 1, self.total_steps, spec))
                batch = state.batches.next()  # the global batch; this process trains on its share
                x, y = (distributed.share_of(t).to(self.device, non_blocking=True) for t in batch)
                values = distributed.mean(forward_backward(self.step_fn, state, x, y, self.device, spec.grad_accum,
                                                           spec.grad_clip))
                self.guard.record(step, values)
                if (not self.guard.deferred or self.syncs_at(step)) and (bad := self.guard.diverged()):
                    self.diverged(*bad)
                    break
                state.optimizer.step()
                state.model.after_step(distributed.summed)  # e.g. a router's balancing bias, from the step's load
                state.advance(batch[0].numel(), time.perf_counter() - tic)  # batch × sequence length
                self.throughput.update(state)
                self.meter.add(values)
                new: dict[str, float] = {}
                if step % spec.log_every == 0 or step == self.total_steps:
                    row = self.log_train(lr)
                    new.update(loss=row["train/loss"], tok_s=row["perf/tokens_per_s"])
                if step % spec.eval_every == 0 or step == self.total_steps:
                    new["val"] = self.evaluate()["val/loss"]
                self.checkpointer.step(state)
                for hook in self.hooks:
                    hook(state)
                progress.update(step, **new)

    def syncs_at(self, step: int) -> bool:
        """Steps where the loop reads the device anyway (a train row, an eval, a checkpoint, the last step)."""
        every = (self.tspec.log_every, self.tspec.eval_every, self.checkpointer.every or 0)
        return step == self.total_steps or any(n and step % n == 0 for n in every)

    def _position(self) -> dict[str, Any]:
        return {"step": self.state.step, "tokens": self.state.tokens, "time_s": self.state.time_s}

    def evaluate(self) -> dict[str, Any]:
        row = {**self._position(), **self.evaluator(self.state.model)}
        self.sink.log(row)
        self.summary.record_eval(row)
        return row

    def log_train(self, lr: float) -> dict[str, Any]:
        tok_s = self.throughput.rate(self.state)
        row = {**self._position(), "lr": lr, **self.meter.means(), "perf/tokens_per_s": tok_s,
               **{f"train/{key}": float(value) for key, value in self.state.model.component_metrics().items()}}
        if self.peak:
            row["perf/mfu"] = self.fpt * tok_s / self.peak
        self.sink.log(row)
        self.summary.record_train(row)
        return row

    def diverged(self, step: int, values: dict[str, float]) -> None:
        self.summary.diverge(step)
        self.sink.log({**self._position(), **values})
        log.warning("%s diverged at step %d (%s)", self.summary.overrides, step,
                    ", ".join(f"{key} {value}" for key, value in values.items()))
