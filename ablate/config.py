"""The config layer: compose → typed specs (OmegaConf.structured, nothing copied by hand) → `validate`.

`validate` rejects every problem it finds, one line each naming the field and the fix, before any directory,
cache, model or W&B run exists. Component knobs are checked against the option class's own signature, then
by the class's `check`.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ablate.components import FAMILY_BASES
from ablate.components.options import searchpath_overrides
from ablate import CONF_DIR
from ablate.data import check_data_config, vocab_size_of_config
from ablate.patterns import PATTERN_FAMILIES, check_patterns, pattern_choices
from ablate.spec import (
    COMPONENT_FAMILIES,
    FAMILIES,
    KEEP_CHECKPOINTS,
    MUON_LR_RULES,
    MUON_MAX_NS_STEPS,
    OPTIMIZERS,
    TARGET_KEY,
    Choice,
    ModelConfig,
    ModelSpec,
    OptimSpec,
    SpecError,
    TrainSpec,
)

DEVICES = ("auto", "cpu", "cuda", "mps")


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config `python -m ablate.run <overrides>` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
    searchpath = searchpath_overrides(list(overrides or []))
    if searchpath:  # kept (a recording-only key) for what finds options by name later: model.*_pattern entries
        from hydra.core.override_parser.overrides_parser import OverridesParser

        entries = OverridesParser.create().parse_overrides(list(searchpath))[-1].value()
        with open_dict(cfg):
            cfg.hydra = {"searchpath": list(entries)}
    return cfg


def choices(cfg: DictConfig) -> dict[str, str]:
    """The option picked in each component group, e.g. {"attention": "gqa", ...}."""
    return {family: str(cfg[family].name) for family in FAMILIES}


def choice(node: Any) -> Choice:
    """A family's config node as a Choice: `name`, `_target_`, and everything else as knobs."""
    knobs = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    name = str(knobs.pop("name"))
    return Choice(name, knobs, knobs.pop(TARGET_KEY, None))


def structured(schema: type, node: Any, where: str) -> Any:
    """`node` checked against the dataclass `schema` (unknown keys, types), as an instance of it."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise SpecError([_schema_problem(e, where, schema)]) from None


def _schema_problem(e: OmegaConfBaseException, where: str, schema: type) -> str:
    key = f"{where}.{e.full_key}" if getattr(e, "full_key", None) else where
    if isinstance(e, ConfigKeyError):
        allowed = ", ".join(schema.__dataclass_fields__)
        return f"{key} is not a key of {where}; its keys are: {allowed}"
    return f"{key}: {str(e.msg).splitlines()[0] if hasattr(e, 'msg') else e}"


def model_spec(cfg: DictConfig, vocab_size: int | None = None) -> ModelSpec:
    dims = vars(structured(ModelConfig, cfg.model, "model"))
    dims.pop("name")
    patterns, problems = {}, []
    for key in PATTERN_FAMILIES:
        try:
            patterns[key] = pattern_choices(cfg, key, dims.pop(key))
        except SpecError as e:
            problems += e.problems
    if problems:
        raise SpecError(problems)
    return ModelSpec(
        vocab_size=vocab_size if vocab_size is not None else vocab_size_of_config(cfg.data, cfg.tokenizer),
        **dims,
        **patterns,
        **{family: choice(cfg[family]) for family in COMPONENT_FAMILIES},
        dropout=_dropout(cfg.dropout, "residual"),
        attention_dropout=_dropout(cfg.dropout, "attention"),
        seed=int(cfg.seed),
    )


def _dropout(node: DictConfig, where: str) -> float:
    """dropout.<where> (attention or residual) if given, else dropout.p."""
    value = node.get(where)
    return float(node.p if value is None else value)


def train_spec(cfg: DictConfig) -> TrainSpec:
    spec = structured(TrainSpec, cfg.train, "train")
    spec.optim = structured(OptimSpec, cfg.get("optim") or {}, "optim")  # a config from before the group: adamw
    return spec


def _check_dims(spec: ModelSpec) -> list[str]:
    problems = [f"model.{name}={getattr(spec, name)} must be a positive integer"
                for name in ("d_model", "n_layers", "n_heads", "block_size", "vocab_size") if getattr(spec, name) < 1]
    if not problems and spec.d_model % spec.n_heads:
        heads = [h for h in range(1, spec.d_model + 1) if spec.d_model % h == 0 and h <= 64]
        problems.append(f"model.d_model={spec.d_model} must be divisible by model.n_heads={spec.n_heads}; "
                        f"pick n_heads from {heads}")
    if len({spec.dropout, spec.attention_dropout}) == 1 and not 0.0 <= spec.dropout < 1.0:
        problems.append(f"dropout.p={spec.dropout} must be in [0, 1)")
    else:
        for key, value in (("residual", spec.dropout), ("attention", spec.attention_dropout)):
            if not 0.0 <= value < 1.0:
                problems.append(f"dropout.{key}={value} must be in [0, 1) (null: dropout.p)")
    if not math.isfinite(spec.init_std) or spec.init_std <= 0:
        problems.append(f"model.init_std={spec.init_std} must be a finite number > 0")
    if not (math.isfinite(spec.z_loss) and spec.z_loss >= 0):
        problems.append(f"model.z_loss={spec.z_loss} must be a finite number >= 0 (0 turns it off; PaLM: 1e-4)")
    cap = spec.logit_softcap
    if cap is not None and not (math.isfinite(cap) and cap > 0):
        problems.append(f"model.logit_softcap={cap} must be a finite number > 0, or null to turn it off "
                        f"(Gemma 2: 30)")
    return problems


def component_class(family: str, option: Choice) -> type:
    """The option's class, or SpecError if its `_target_` is missing, not importable or not of this family."""
    base = FAMILY_BASES[family]
    contract = f"a subclass of ablate.components.{base.__name__}"
    if not option.target:
        raise SpecError([f"{family}={option.name} names no class: add `_target_: <module>.<Class>` ({contract}) "
                         f"to its YAML"])
    try:
        cls = option.cls
    except Exception as e:  # noqa: BLE001 - any import problem is the user's to see, in one line
        raise SpecError([f"{family}={option.name}: _target_ {option.target} cannot be imported "
                         f"({type(e).__name__}: {e}); check the module is on PYTHONPATH"]) from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise SpecError([f"{family}={option.name}: _target_ {option.target} is not {contract}; "
                         f"derive it from ablate.components.{base.__name__}"])
    return cls


def _filled(family: str, option: Choice, cls: type) -> Choice:
    """The option with its knobs type-checked against the class signature and every default filled in."""
    schema = cls.knob_schema()
    unknown = [k for k in option.knobs if k not in schema.__dataclass_fields__]
    if unknown:
        allowed = ", ".join(schema.__dataclass_fields__) or "none"
        raise SpecError([f"{family}.{k} is not a knob of {family}={option.name}; its knobs are: {allowed}"
                         for k in unknown])
    knobs = vars(structured(schema, option.knobs, family))
    return Choice(option.name, knobs, option.target)


def _check_components(spec: ModelSpec) -> tuple[ModelSpec, list[str]]:
    """Each option's class and knobs, then the cross-field rules. Those rules may ask any option's class (rope asks
    the attention's), so they run only once every class has resolved."""
    problems: list[str] = []
    classes, filled = {}, {}
    for family in COMPONENT_FAMILIES:
        option = getattr(spec, family)
        try:
            classes[family] = cls = component_class(family, option)
            filled[family] = _filled(family, option, cls)
        except SpecError as e:
            problems += e.problems
    patterns = {}
    for key, family in PATTERN_FAMILIES.items():
        entries = []
        for option in getattr(spec, key):
            try:
                entries.append(_filled(family, option, component_class(family, option)))
            except SpecError as e:
                problems += [f"model.{key}: {line}" for line in e.problems]
        patterns[key] = tuple(entries)
    if problems:
        return spec, problems
    spec = ModelSpec(**{**vars(spec), **filled, **patterns})
    for family, option in filled.items():
        problems += classes[family].check(spec, option.knobs)
    problems += check_patterns(spec, classes)
    problems += _check_value_residual(spec)
    acts_on, attention = classes["pos_enc"].acts_on, classes["attention"]
    if acts_on not in attention.supports:
        problems.append(
            f"pos_enc={spec.pos_enc.name} cannot be used with attention={spec.attention.name}: "
            f"{attention.unsupported_reason.get(acts_on, 'not supported')}; choose another pos_enc or attention"
        )
    return spec, problems


def _check_value_residual(spec: ModelSpec) -> list[str]:
    """model.value_residual mixes layer 0's values into every later layer: each layer's attention must declare the
    values it shares (`value_heads`), all in layer 0's shape."""
    if not spec.value_residual:
        return []
    first = None
    for layer in range(spec.n_layers):
        layer_spec = spec.at_layer(layer)
        option = layer_spec.attention
        heads = option.cls.value_heads(layer_spec, option.knobs)
        if heads is None:
            reason = option.cls.unsupported_reason.get("value_residual", "it declares no values to share (value_heads)")
            return [f"model.value_residual=true cannot be used with attention={option.name}: {reason}; "
                    f"set model.value_residual=false or choose another attention"]
        first = first or (option.name, heads)
        if heads != first[1]:
            return [f"model.value_residual=true needs every layer's values shaped like layer 0's (attention={first[0]}:"
                    f" {first[1][0]} heads of {first[1][1]}), but layer {layer} (attention={option.name}) has "
                    f"{heads[0]} heads of {heads[1]}; use attentions with the same value heads"]
    return []


def _check_optim(o: OptimSpec, given: list[str]) -> list[str]:
    """`given`: the keys the config's optim node sets (under adamw, a Muon knob would be silently ignored)."""
    if o.name not in OPTIMIZERS:  # (make_optimizer would build AdamW for it, recorded under this name)
        return [f"optim={o.name} is no optimizer ablate can build: an optim YAML's name must be one of "
                f"{', '.join(OPTIMIZERS)} (their code is ablate.training.optim.make_optimizer)"]
    if o.name == "adamw":
        return [f"optim.{key} is a knob of optim=muon, not of optim=adamw (AdamW takes train.lr, train.betas and "
                f"train.weight_decay); remove it, or choose optim=muon" for key in given if key != "name"]
    problems = []
    if o.lr is not None and not (math.isfinite(o.lr) and o.lr > 0):
        problems.append(f"optim.lr={o.lr} must be > 0 and finite, or null (train.lr)")
    if not 0.0 <= o.momentum < 1.0:
        problems.append(f"optim.momentum={o.momentum} must be in [0, 1)")
    if not 1 <= o.ns_steps <= MUON_MAX_NS_STEPS:
        problems.append(f"optim.ns_steps={o.ns_steps} must be >= 1 and <= {MUON_MAX_NS_STEPS} (Newton-Schulz "
                        f"iterations; Muon uses 5)")
    if o.adjust_lr not in MUON_LR_RULES:
        problems.append(f"optim.adjust_lr={o.adjust_lr} must be one of {', '.join(MUON_LR_RULES)}")
    return problems


def _check_train(t: TrainSpec) -> list[str]:
    problems = []
    positive = {"batch_size": t.batch_size, "eval_every": t.eval_every, "eval_batches": t.eval_batches,
                "log_every": t.log_every}
    problems += [f"train.{name}={value} must be > 0" for name, value in positive.items() if value <= 0]
    if not (math.isfinite(t.lr) and t.lr > 0):
        problems.append(f"train.lr={t.lr} must be > 0 and finite")
    for name in ("max_steps", "max_tokens", "checkpoint_every"):
        value = getattr(t, name)
        if value is not None and value <= 0:
            problems.append(f"train.{name}={value} must be > 0 (or null)")
    if t.grad_accum < 1 or t.batch_size % t.grad_accum:
        problems.append(f"train.grad_accum={t.grad_accum} must be a positive divisor of train.batch_size="
                        f"{t.batch_size} (each optimizer step splits the batch into that many micro-batches)")
    if str(t.compile).lower() not in ("auto", "true", "false"):
        problems.append(f"train.compile={t.compile} must be auto (compile on CUDA only), true or false")
    if t.inference.decode_tokens < 0 or t.inference.batch < 1:
        problems.append(f"train.inference needs decode_tokens >= 0 (0: no timing) and batch >= 1, not "
                        f"decode_tokens={t.inference.decode_tokens}, batch={t.inference.batch}")
    if t.keep_checkpoints not in KEEP_CHECKPOINTS:
        problems.append(f"train.keep_checkpoints={t.keep_checkpoints} must be one of {', '.join(KEEP_CHECKPOINTS)} "
                        f"(what a completed run keeps: checkpoints and final weights, final weights only, nothing)")
    if "cpu" not in t.steps_by_device:
        problems.append("train.steps_by_device needs a `cpu` entry (the fallback budget)")
    if not 0.0 <= t.min_lr_ratio <= 1.0:
        problems.append(f"train.min_lr_ratio={t.min_lr_ratio} must be in [0, 1]")
    if not 0.0 <= t.warmup_fraction < 1.0:
        problems.append(f"train.warmup_fraction={t.warmup_fraction} must be in [0, 1)")
    if not (math.isfinite(t.weight_decay) and t.weight_decay >= 0):
        problems.append(f"train.weight_decay={t.weight_decay} must be a finite number >= 0")
    if len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas):
        problems.append(f"train.betas={list(t.betas)} must be two numbers in [0, 1), e.g. [0.9, 0.95]")
    if not t.grad_clip >= 0:
        problems.append(f"train.grad_clip={t.grad_clip} must be >= 0 (0 turns clipping off)")
    problems += _check_ensemble_seeds(t.ensemble_seeds)
    s = t.sample
    if not (s.tokens >= 0 and s.temperature >= 0 and 0 < s.top_p <= 1):
        problems.append("train.sample needs tokens >= 0, temperature >= 0 and 0 < top_p <= 1")
    if s.prompt == "":
        problems.append("train.sample.prompt is empty: give some text, or null for the first words of the val split")
    return problems


def _check_ensemble_seeds(seeds: list[int] | None) -> list[str]:
    if seeds is None:
        return []
    if not seeds:
        return ["train.ensemble_seeds=[] trains no seed: list the seeds to train together, e.g. [0,1,2], or null "
                "for one run of `seed`"]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        return [f"train.ensemble_seeds={list(seeds)} repeats seed {', '.join(map(str, repeated))}: each member is "
                f"the run of one seed; list every seed once"]
    return []


def ensemble_override_problems(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """An ensemble job names its seeds itself: a `seed` override beside it (a seed sweep makes one per job) would
    train every listed seed once per job, or be silently ignored."""
    seeds = OmegaConf.select(cfg, "train.ensemble_seeds")
    given = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "seed"]
    if seeds is None or not given:
        return []
    return [f"train.ensemble_seeds={list(seeds)} names the seeds itself: drop {given[0]} (with a seed sweep every "
            f"job would train the same seeds again)"]


def _check_processes(t: TrainSpec) -> list[str]:
    """A run of N processes (torchrun, a multi-task SLURM job) splits each global batch into N equal shares, each
    into grad_accum micro-batches."""
    from ablate.training.distributed import world_size  # (here: ablate.training imports this module)

    world = world_size()
    if world > 1 and t.ensemble_seeds is not None:
        return [f"train.ensemble_seeds trains several seeds in one process; it cannot run in {world} processes "
                f"(torchrun/DDP): launch the ensemble as one process, or drop train.ensemble_seeds"]
    if world == 1 or t.batch_size % (world * t.grad_accum) == 0:
        return []
    return [f"train.batch_size={t.batch_size} must be divisible by world_size x train.grad_accum = {world} x "
            f"{t.grad_accum} (each of the {world} processes trains on an equal share of every batch, in grad_accum "
            f"micro-batches); choose a batch_size that is a multiple of {world * t.grad_accum}, or fewer processes"]


def validate(cfg: DictConfig, runs_here: bool = False) -> tuple[ModelSpec, TrainSpec]:
    """Turn a composed config into specs, or raise SpecError listing every problem (one line each). `runs_here`:
    the run is about to start on this machine, so its device must exist here too (not so for a run loaded for
    analysis, or a sweep job a launcher sends to another machine)."""
    problems: list[str] = []
    mspec = tspec = None
    try:
        mspec = model_spec(cfg)
    except SpecError as e:
        problems += e.problems
    except (KeyError, ValueError) as e:
        problems.append(str(e.args[0]) if e.args else repr(e))
    if mspec is not None:
        problems += _check_dims(mspec)
        if not problems:
            mspec, component_problems = _check_components(mspec)
            problems += component_problems
    try:
        tspec = train_spec(cfg)
        problems += _check_train(tspec)
        problems += _check_optim(tspec.optim, list(cfg.get("optim") or {}))
    except SpecError as e:
        problems += e.problems
    device = str(cfg.device)
    if device not in DEVICES and not device.startswith("cuda:"):
        problems.append(f"device={device} is not one of auto, cpu, cuda, cuda:N, mps")
    elif runs_here:
        from ablate.training.device import device_problem  # (here: ablate.training imports this module)

        problems += filter(None, [device_problem(device)])
    if runs_here and tspec is not None and tspec.grad_accum >= 1:
        problems += _check_processes(tspec)
    if mspec is not None:
        problems += check_data_config(cfg.data, cfg.tokenizer, mspec.block_size)
    if problems:
        raise SpecError(problems)
    return mspec, tspec
