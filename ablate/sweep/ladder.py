"""The automatic "putting everything together" ladder.

Runs one-factor studies in order. After each, the option with the lowest mean final val loss over seeds replaces
the current choice only if it beats it beyond the seed noise, by the rule the comparison report's verdict uses
(ablate.compare.stats.beyond_noise: margin ≥ 2 × pooled std and p < 0.05, p from the paired t-test when seed k of
both options saw the same batches, else Welch's, Holm-adjusted over the study's challengers against the current
choice), with at least 2 completed seeds on each side; otherwise the current choice stays and the log says why. The factor a study varied and its options are
read from its sweep's manifest.json (conf/study/<study>.yaml when the sweep wrote none). Every decision is written
to ladder.json as soon as it is made, so re-running the same command picks up where it stopped (finished jobs are
skipped by the trainer, a study already decided is not re-decided).

A job whose computation already ran (the same config hash: the choice carried over from the previous study, or a run
in a `--reuse` sweep dir) is not trained again: its finished runs enter the decision. `--options ffn=relu,swiglu`
restricts a study to those options (the current choice always stays). A study with no completed run at all stops the
ladder with an error.

    python -m ablate.ladder --studies attention,pos_enc,placement,ffn,dropout --seeds 0,1,2 -- model=tiny
    python -m ablate.ladder --studies ffn,attention --options ffn=relu,swiglu --reuse multirun/study-ffn -- model=tiny
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean
from typing import Any


import yaml

from ablate.compare.load import Run
from ablate.compare.rows import pair_key
from ablate.compare.stats import ALPHA, NOISE_SIGMAS, Arm, beyond_noise, pooled_std, study_comparisons
from ablate.spec import FAMILIES
from ablate.sweep.manifest import StudyEntry, read_manifest
from ablate.sweep.report import collect_summaries
from ablate.sweep.reuse import finished_runs, reusable_options
from ablate.sweep.sweeper import load_study, study_options
from ablate.track import atomic_write

DEFAULT_STUDIES = ("attention", "pos_enc", "placement", "ffn", "dropout")  # the order of the original phases 1-5


@dataclass(frozen=True)
class NoiseRule:
    sigmas: float = NOISE_SIGMAS  # a switch needs margin ≥ sigmas × pooled std
    min_seeds: int = 2  # ... and at least this many completed seeds for both options
    alpha: float = ALPHA  # ... and (Holm-adjusted) p < alpha


@dataclass
class Decision:
    study: str
    current: str
    best: str
    chosen: str
    margin: float | None  # mean(current) - mean(best): positive when best has the lower loss
    pooled_std: float | None  # of the two options' losses, as in the comparison report (ablate.compare.stats)
    p_value: float | None  # raw p of the test (paired t or Welch), best vs current
    seeds: dict[str, int]  # completed seeds per option
    means: dict[str, float]
    reason: str
    factor: str | None = None  # the config group the study varied
    source: str | None = None  # where the factor was read: the sweep's manifest.json or conf/study/<study>.yaml
    p_adjusted: float | None = None  # Holm over the study's challengers vs the current choice; the rule uses it
    test: str | None = None  # "paired t" or "Welch"


def decide(study: str, current: str, losses: dict[str, list[float] | Arm], rule: NoiseRule) -> Decision:
    """Pick the next choice for `study` from final val losses per option (completed runs only; an Arm also says
    what pairs each value with the other options' runs)."""
    arms = {option: v if isinstance(v, Arm) else Arm(list(v)) for option, v in losses.items()}
    means = {option: mean(arm.values) for option, arm in arms.items() if arm.values}
    seeds = {option: len(arm.values) for option, arm in arms.items()}
    if current not in means:
        best = min(means, key=means.get) if means else current
        return Decision(study, current, best, current, None, None, None, seeds, means,
                        f"the current choice {current} has no completed run: keep it")
    challengers = {option: m for option, m in means.items() if option != current}
    best = min(challengers, key=challengers.get) if challengers else current
    if best == current or means[best] > means[current]:
        return Decision(study, current, current, current, 0.0, None, None, seeds, means,
                        f"{current} has the lowest mean loss: keep it")
    # From here the best challenger is at most as high as the current choice: a tie is "within noise" too.
    a, b = arms[current].values, arms[best].values
    margin = means[current] - means[best]
    spread = pooled_std(a, b) if min(len(a), len(b)) > 1 else math.nan
    comparison = study_comparisons(arms, current, rule.sigmas, rule.alpha)[best]
    p_value = comparison.p_value if min(len(a), len(b)) > 1 else None
    p_adjusted = comparison.p_adjusted if p_value is not None else None
    p = math.nan if p_adjusted is None else p_adjusted
    test = comparison.test if p_value is not None else None
    named = f"{test} p = {p_value:.3g} (Holm {p:.3g})" if p_value is not None else ""
    if min(len(a), len(b)) < rule.min_seeds:
        reason = f"{best} is lower by {margin:.4f} but has fewer than {rule.min_seeds} seeds per side: keep {current}"
        chosen = current
    elif beyond_noise(margin, spread, p, rule.sigmas, rule.alpha):  # the comparison report's verdict rule
        reason = (f"{best} beats {current} by {margin:.4f} ≥ {rule.sigmas:g} × pooled std {spread:.4f}, "
                  f"{named} < {rule.alpha:g}: switch")
        chosen = best
    elif margin >= rule.sigmas * spread:
        reason = (f"{best} is lower by {margin:.4f} ≥ {rule.sigmas:g} × pooled std {spread:.4f}, but "
                  f"{named} ≥ {rule.alpha:g}: within noise, keep {current}")
        chosen = current
    else:
        reason = (f"{best} is lower by {margin:.4f}, within noise ({rule.sigmas:g} × pooled std = "
                  f"{rule.sigmas * spread:.4f}): keep {current}")
        chosen = current
    return Decision(study, current, best, chosen, margin, None if math.isnan(spread) else spread, p_value, seeds,
                    means, reason, p_adjusted=p_adjusted, test=test)


def final_losses(sweep_dir: Path, factor: str, options: Iterable[str] = (), reused: Iterable[dict[str, Any]] = ()
                 ) -> dict[str, Arm]:
    """Completed runs' final val losses per option of `factor` (options that have none: empty), each with its
    pairing key (seed and data order) as compare reads it; `reused`: finished runs recorded elsewhere."""
    losses: dict[str, Arm] = {str(option): Arm([], []) for option in options}
    summaries = collect_summaries(sweep_dir) if sweep_dir.is_dir() else []
    seen = {s["run_dir"] for s in summaries}
    for summary in [*summaries, *(r for r in reused if r["run_dir"] not in seen)]:
        option = str(summary.get(factor))
        arm = losses.setdefault(option, Arm([], []))
        if summary["status"] == "completed":
            arm.values.append(float(summary["final/val_loss"]))
            arm.keys.append(pair_key(Run(Path(summary["run_dir"]), summary, _config(Path(summary["run_dir"])))))
    return losses


def _config(run_dir: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):  # unreadable: the run pairs by its seed alone
        return {}


def study_factor(study: str) -> str:
    """The config group a study varies, read from conf/study/<study>.yaml."""
    spec = load_study(study, where="--studies")
    factor = str(spec.study.varies)
    if factor not in FAMILIES:
        raise SystemExit(f"--studies: {study} varies {factor}, not a component group; the ladder needs one-factor "
                         f"studies of {', '.join(FAMILIES)}")
    return factor


def _manifest_entry(study: str, sweep_dir: Path) -> StudyEntry | None:
    """The sweep's own statement of the study it ran (manifest.json), when it has a usable one."""
    manifest = read_manifest(sweep_dir)
    if manifest is None:
        return None
    named = [e for e in manifest.studies if e.name == study]
    entries = named or (manifest.studies if len(manifest.studies) == 1 else [])
    if len(entries) != 1 or len(entries[0].varies) != 1 or entries[0].varies[0] not in FAMILIES:
        print(f"ladder: {sweep_dir / 'manifest.json'} states no one-factor study {study}: "
              f"using conf/study/{study}.yaml", flush=True)
        return None
    return entries[0]


def study_result(study: str, sweep_dir: Path, choices: dict[str, str], reused: list[dict[str, Any]] = ()
                 ) -> tuple[str, str, dict[str, Arm], str]:
    """(factor, current choice, final losses per option, where the factor was read) of a finished study sweep: the
    factor, its options and baseline from the sweep's manifest.json, else the factor from conf/study/<study>.yaml.
    The ladder launched the sweep with `study.baseline=<its current choice>`; a manifest naming another baseline is
    reported, and the decision stays against the ladder's current choice (the option later phases build on)."""
    entry = _manifest_entry(study, sweep_dir)
    if entry is None:
        factor = study_factor(study)
        return factor, choices[factor], final_losses(sweep_dir, factor, (), reused), f"conf/study/{study}.yaml"
    factor = entry.varies[0]
    current, stated = choices[factor], entry.baseline.get(factor)
    if stated is not None and stated != current:
        print(f"ladder: {sweep_dir / 'manifest.json'} names baseline {factor}={stated}, the ladder's current choice "
              f"is {current}: deciding against {current}", flush=True)
    losses = final_losses(sweep_dir, factor, entry.options.get(factor, []), reused)
    return factor, current, losses, str(sweep_dir / "manifest.json")


def run_study(study: str, index: int, choices: dict[str, str], seeds: list[int], overrides: list[str],
              ladder_dir: Path, options: list[str] | None = None) -> Path:
    """The study's sweep under ladder_dir (`options`: only those of its options)."""
    factor = study_factor(study)
    sweep_dir = ladder_dir / f"{index}-{study}"
    fixed = [f"{family}={option}" for family, option in choices.items() if family != factor]
    chosen = [f"{factor}={','.join(options)}"] if options is not None else []
    cmd = [sys.executable, "-m", "ablate.run", "-m", f"+study={study}", f"seed={','.join(map(str, seeds))}",
           f"study.baseline={choices[factor]}", *chosen, *fixed, *overrides, f"hydra.sweep.dir={sweep_dir}"]
    print("ladder:", " ".join(cmd[2:]), flush=True)
    # failed jobs are recorded in their run dirs: decide on the completed ones, and say so in the exit code at the end
    returncode = subprocess.run(cmd, check=False).returncode
    if returncode == 2:  # the sweep refused its configs before any job started: nothing to decide on
        raise SystemExit(f"ladder: the {study} study's sweep refused its config (see the lines above); nothing ran")
    if returncode:
        print(f"ladder: {study}: some jobs did not complete (sweep exit {returncode}); deciding on the completed "
              f"ones, see {sweep_dir / 'sweep.json'}", flush=True)
    return sweep_dir


def phase_overrides(choices: dict[str, str]) -> list[str]:
    return [f"{family}={option}" for family, option in choices.items()]


def phase_yaml(index: int, choices: dict[str, str], note: str) -> str:
    lines = ["# @package _global_", f"# Ladder phase {index}: {note}", "defaults:"]
    lines += [f"  - override /{family}: {json.dumps(option)}" for family, option in choices.items()]
    return "\n".join(lines) + "\n"


def study_plan(study: str, choices: dict[str, str], seeds: list[int], overrides: list[str],
               restrict: dict[str, list[str]], reuse_dirs: list[Path]) -> tuple[list[str], dict[str, list[dict]]]:
    """(options to train, {option: finished runs used instead}): the study's options (or those --options names;
    the current choice always), minus those whose every seed already ran somewhere under reuse_dirs."""
    factor = study_factor(study)
    options = restrict.get(factor) or study_options(load_study(study))[1]
    options = [choices[factor], *(o for o in options if o != choices[factor])]
    reused = reusable_options(options, factor, choices, seeds, overrides, finished_runs(reuse_dirs))
    for option, runs in reused.items():
        print(f"ladder: {study}: {factor}={option} already ran ({', '.join(r['run_dir'] for r in runs)}): "
              "reused, not retrained", flush=True)
    return [o for o in options if o not in reused], reused


def run_ladder(studies: list[str], seeds: list[int], overrides: list[str], ladder_dir: Path,
               rule: NoiseRule, start: dict[str, str], restrict: dict[str, list[str]] | None = None,
               reuse: list[Path] = ()) -> dict[str, Any]:
    ladder_dir.mkdir(parents=True, exist_ok=True)
    log_path = ladder_dir / "ladder.json"
    state = json.loads(log_path.read_text()) if log_path.exists() else {}
    if state and (state["studies"] != studies or state["seeds"] != seeds or state["overrides"] != overrides):
        raise SystemExit(f"{log_path} is a ladder with other studies, seeds or overrides; use another --dir")
    state = state or {"studies": studies, "seeds": seeds, "overrides": overrides, "rule": asdict(rule),
                      "start": start, "decisions": [], "phases": [phase_overrides(start)]}
    choices = dict(state["start"])
    for decision in state["decisions"]:
        choices[decision.get("factor") or study_factor(decision["study"])] = decision["chosen"]
    for index, study in enumerate(studies[len(state["decisions"]):], start=len(state["decisions"])):
        train, reused = study_plan(study, choices, seeds, overrides, restrict or {}, [ladder_dir, *reuse])
        sweep_dir = (run_study(study, index, choices, seeds, overrides, ladder_dir, train) if train
                     else ladder_dir / f"{index}-{study}")
        factor, current, losses, source = study_result(study, sweep_dir, choices,
                                                       [r for runs in reused.values() for r in runs])
        if not any(arm.values for arm in losses.values()):
            raise SystemExit(f"ladder: {study}: no completed run to decide on under {sweep_dir} (see its "
                             "sweep.json and the runs' error.txt); stopped")
        decision = decide(study, current, losses, rule)
        decision.factor, decision.source = factor, source
        print(f"ladder: {study}: {decision.reason}", flush=True)
        choices[factor] = decision.chosen
        state["decisions"].append(asdict(decision))
        state["phases"].append(phase_overrides(choices))
        atomic_write(log_path, json.dumps(state, indent=2))
    for index, phase in enumerate(state["phases"]):
        note = "start" if index == 0 else state["decisions"][index - 1]["reason"]
        atomic_write(ladder_dir / "phases" / f"{index}.yaml",
                     phase_yaml(index, dict(o.split("=", 1) for o in phase), note))
    atomic_write(log_path, json.dumps(state, indent=2))
    return state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ablate.ladder", description=__doc__.split("\n\n")[1])
    parser.add_argument("--studies", default=",".join(DEFAULT_STUDIES), help="comma-separated, in order")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds run for every option")
    parser.add_argument("--dir", default="multirun/ladder", help="where the studies' runs and ladder.json go")
    parser.add_argument("--sigmas", type=float, default=NoiseRule.sigmas, help="switch needs margin ≥ N × pooled std")
    parser.add_argument("--alpha", type=float, default=NoiseRule.alpha,
                        help="... and p < ALPHA (paired t or Welch, Holm-adjusted within the study)")
    parser.add_argument("--min-seeds", type=int, default=NoiseRule.min_seeds, help="completed seeds needed per side")
    parser.add_argument("--options", action="append", default=[], metavar="FAMILY=A,B",
                        help="run only these options in that family's study (repeatable; the current choice stays)")
    parser.add_argument("--reuse", action="append", default=[], type=Path, metavar="DIR",
                        help="sweep dirs whose finished runs are used instead of training the same config again")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job (after --)")
    args = parser.parse_args(argv)
    restrict = {}
    for item in args.options:
        family, sep, values = item.partition("=")
        if not sep or family not in FAMILIES or not values:
            parser.error(f"--options {item}: expected FAMILY=A,B with FAMILY one of {', '.join(FAMILIES)}")
        restrict[family] = [v for v in values.split(",") if v]
    if not 0 < args.alpha <= 1:
        parser.error(f"--alpha {args.alpha}: must be in (0, 1]")
    studies = [s for s in args.studies.split(",") if s]
    for study in studies:
        try:
            study_factor(study)
        except ValueError as e:
            parser.error(str(e))
    from ablate import compose

    base = compose(args.overrides)
    start = {family: str(base[family].name) for family in FAMILIES}
    state = run_ladder(studies, [int(s) for s in args.seeds.split(",")], args.overrides, Path(args.dir),
                       NoiseRule(args.sigmas, args.min_seeds, args.alpha), start, restrict, args.reuse)
    print(f"ladder: final choices {' '.join(state['phases'][-1])}; decisions and phases in {args.dir}")
    incomplete = [d["study"] for d in state.get("decisions", []) if not d["seeds"] or 0 in d["seeds"].values()]
    if incomplete:
        raise SystemExit(f"ladder: {', '.join(incomplete)}: an option has no completed run (see each study's "
                         "sweep.json); the decisions above kept the current choice there")


if __name__ == "__main__":
    main()
