"""Progress on the console: a live bar on a terminal; one log line per log/eval interval when stdout is a file or a
pipe (SLURM, nohup, `| tee`), where a live bar would print once at the end and leave the log silent until then."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ablate.training import distributed

log = logging.getLogger(__name__)


def progress_display(description: str, total: int, completed: int, val: float | None) -> ProgressBar | ProgressLines:
    """The display for this console (`description` names the run in each line): `update` it after every step
    with whatever is new; `val` is the last val loss of a resumed run."""
    console = Console()
    live = (console.is_terminal or console.is_jupyter) and distributed.is_main()  # one bar, rank 0's
    return ProgressBar(total, completed, val) if live else ProgressLines(description, total, completed)


class ProgressBar:
    """The live bar: step, train loss, val loss, tokens/s, elapsed, ETA."""

    def __init__(self, total: int, completed: int, val: float | None):
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[tok_s]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.bar.add_task("train", total=total, completed=completed, loss="-", tok_s="-",
                                      val="-" if val is None else f"{val:.3f}")

    def __enter__(self) -> ProgressBar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def update(self, step: int, loss: float | None = None, tok_s: float | None = None,
               val: float | None = None) -> None:
        fields = {"loss": (loss, "{:.3f}"), "tok_s": (tok_s, "{:,.0f}"), "val": (val, "{:.3f}")}
        self.bar.update(self.task, completed=step,
                        **{key: form.format(value) for key, (value, form) in fields.items() if value is not None})


class ProgressLines:
    """One plain line per step that logged or evaluated, e.g.
    `<overrides> | step 400/1000 | train loss 2.913 | val loss 2.987 | 41,210 tok/s | elapsed 0:01:02 | eta 0:01:33`;
    val appears at eval steps, the ETA from this process's pace (a resumed run's earlier time is not its pace)."""

    def __init__(self, description: str, total: int, completed: int):
        self.description, self.total, self.start_step = description, total, completed
        self.width = len(str(total))

    def __enter__(self) -> ProgressLines:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, step: int, loss: float | None = None, tok_s: float | None = None,
               val: float | None = None) -> None:
        if loss is None and val is None:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / (step - self.start_step) * (self.total - step) if step > self.start_step else None
        parts = [f"step {step:>{self.width}}/{self.total}"]
        parts += [f"train loss {loss:.3f}"] if loss is not None else []
        parts += [f"val loss {val:.3f}"] if val is not None else []
        parts += [f"{tok_s:,.0f} tok/s"] if tok_s is not None else []
        parts += [f"elapsed {_clock(elapsed)}", f"eta {_clock(eta) if eta is not None else '-'}"]
        log.info("%s | %s", self.description, " | ".join(parts))


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))
