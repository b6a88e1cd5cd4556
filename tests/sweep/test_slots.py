"""hydra/launcher=gpus: slots resolve from the config or refuse in one line; a slot never holds more jobs than its
room, checked with real processes; a real sweep of 8 jobs on 2 CPU slots (the assignment logic does not depend on
the device, so CPU slots test it here) records each job's slot."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import time

import pytest

from ablate.sweep.slots import SlotError, SlotPool, resolve_slots
from tests.conftest import TINY


@pytest.mark.parametrize(("gpus", "cuda", "slots"), [
    ("auto", 2, ["cuda:0", "cuda:1"]),
    ([0, 1], 2, ["cuda:0", "cuda:1"]),
    (["cpu", "cpu"], 0, ["cpu", "cpu"]),
    (["cuda:1", "cpu"], 2, ["cuda:1", "cpu"]),
    (3, 4, ["cuda:3"]),
])
def test_slots_resolve(gpus, cuda, slots):
    assert resolve_slots(gpus, cuda) == slots


@pytest.mark.parametrize(("gpus", "cuda", "says"), [
    ("auto", 0, "hydra.launcher.gpus=auto found no CUDA device"),
    ([2], 2, "hydra.launcher.gpus: 2 is not a usable slot (2 CUDA device(s) visible)"),
    (["cuda:0"], 0, "no CUDA device visible"),
    (["tpu"], 0, "tpu is not a usable slot"),
    ([], 0, "hydra.launcher.gpus is empty"),
])
def test_unusable_slots_are_refused_in_one_line(gpus, cuda, says):
    with pytest.raises(SlotError) as error:
        resolve_slots(gpus, cuda)
    assert says in str(error.value) and "\n" not in str(error.value)


def hold_a_place(pool: SlotPool, seconds: float, out) -> None:
    with pool.place() as (slot, _):
        start = time.time()
        time.sleep(seconds)
        out.put((slot, start, time.time()))


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("per_slot", [1, 2])
def test_a_slot_never_holds_more_jobs_than_its_room(tmp_path, per_slot):
    pool = SlotPool(tmp_path / ".slots", ("cpu", "cpu"), per_slot)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=hold_a_place, args=(pool, 0.3, out)) for _ in range(2 * pool.capacity)]
    for w in workers:  # more processes than places: the extra ones must wait for a place to free up
        w.start()
    records = [out.get(timeout=60) for _ in workers]
    for w in workers:
        w.join()
    by_slot = {slot: [(s, e) for sl, s, e in records if sl == slot] for slot in (0, 1)}
    assert sum(len(v) for v in by_slot.values()) == len(workers)
    assert all(max_overlap(v) <= per_slot for v in by_slot.values())
    assert max_overlap([(s, e) for _, s, e in records]) > 1  # they did run side by side


def test_a_sweep_on_two_cpu_slots_runs_every_job_and_records_its_slot(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "ablate.run", "-m", *TINY, "train.max_steps=4", "train.eval_every=4",
         "attention=mha,mqa,gqa,local", "seed=0,1", "hydra/launcher=gpus", "hydra.launcher.gpus=[cpu,cpu]",
         f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert len(summaries) == 8 and {s["status"] for s in summaries} == {"completed"}
    assert {s["slot"] for s in summaries} == {0, 1} and {s["device"] for s in summaries} == {"cpu"}
    jobs = [json.loads(line) for line in (sweep / "slots.jsonl").read_text().splitlines()]
    assert sorted(j["job"] for j in jobs) == list(range(8))
    for slot in (0, 1):
        assert max_overlap([(j["start"], j["end"]) for j in jobs if j["slot"] == slot]) == 1


def test_unusable_slots_stop_the_sweep_before_anything_is_written(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ablate.run", "-m", *TINY, "attention=mha,mqa", "hydra/launcher=gpus",
                           "hydra.launcher.gpus=[tpu]"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "config error:" in line]
    assert len(lines) == 1 and "hydra.launcher.gpus: tpu is not a usable slot" in lines[0]
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
