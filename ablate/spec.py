"""The composed config becomes typed specs here; `validate` rejects impossible combinations before any work starts.

Every problem is one line naming the fields and the fix. Model code only ever sees a `ModelSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

FAMILIES = ("pos_enc", "attention", "ffn", "norm", "placement", "dropout")


class SpecError(ValueError):
    """Raised with one line per problem found in a config."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Choice:
    """One option of a config group and its knobs (everything in the group's YAML except `name`)."""

    name: str
    knobs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    block_size: int
    pos_enc: Choice
    attention: Choice
    ffn: Choice
    norm: Choice
    placement: Choice
    dropout: float = 0.0
    bias: bool = False
    tie_embeddings: bool = True
    init_std: float = 0.02
    seed: int = 0  # used only by variants with seeded structure (e.g. random attention blocks)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class TrainSpec:
    batch_size: int
    max_steps: int | None
    max_tokens: int | None
    steps_by_device: dict[str, int]
    lr: float
    min_lr_ratio: float
    warmup_fraction: float
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float
    eval_every: int
    eval_batches: int
    log_every: int
    compile: bool
    checkpoint_every: int | None
    sample_tokens: int
    sample_temperature: float
    sample_top_p: float
    sample_prompt: str

    def total_steps(self, device: str, block_size: int) -> int:
        """The step budget: an explicit token budget wins, then explicit steps, then the per-device default."""
        if self.max_tokens is not None:
            return max(1, -(-self.max_tokens // (self.batch_size * block_size)))
        if self.max_steps is not None:
            return self.max_steps
        return self.steps_by_device.get(device, self.steps_by_device["cpu"])


def _choice(node: Any) -> Choice:
    knobs = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    name = str(knobs.pop("name"))
    return Choice(name, knobs)


def vocab_size_of(cfg: DictConfig) -> int:
    """The model's vocabulary size as the tokenizer config (or, for data=mqar, the task) defines it."""
    from ablate.data import vocab_size_of_config

    return vocab_size_of_config(cfg.data, cfg.tokenizer)


def model_spec(cfg: DictConfig, vocab_size: int | None = None) -> ModelSpec:
    m = cfg.model
    return ModelSpec(
        vocab_size=vocab_size if vocab_size is not None else vocab_size_of(cfg),
        d_model=int(m.d_model),
        n_layers=int(m.n_layers),
        n_heads=int(m.n_heads),
        block_size=int(m.block_size),
        pos_enc=_choice(cfg.pos_enc),
        attention=_choice(cfg.attention),
        ffn=_choice(cfg.ffn),
        norm=_choice(cfg.norm),
        placement=_choice(cfg.placement),
        dropout=float(cfg.dropout.p),
        bias=bool(m.bias),
        tie_embeddings=bool(m.tie_embeddings),
        init_std=float(m.init_std),
        seed=int(cfg.seed),
    )


def train_spec(cfg: DictConfig) -> TrainSpec:
    t = cfg.train
    return TrainSpec(
        batch_size=int(t.batch_size),
        max_steps=None if t.max_steps is None else int(t.max_steps),
        max_tokens=None if t.max_tokens is None else int(t.max_tokens),
        steps_by_device={k: int(v) for k, v in t.steps_by_device.items()},
        lr=float(t.lr),
        min_lr_ratio=float(t.min_lr_ratio),
        warmup_fraction=float(t.warmup_fraction),
        weight_decay=float(t.weight_decay),
        beta1=float(t.betas[0]),
        beta2=float(t.betas[1]),
        grad_clip=float(t.grad_clip),
        eval_every=int(t.eval_every),
        eval_batches=int(t.eval_batches),
        log_every=int(t.log_every),
        compile=bool(t.compile),
        checkpoint_every=None if t.checkpoint_every is None else int(t.checkpoint_every),
        sample_tokens=int(t.sample.tokens),
        sample_temperature=float(t.sample.temperature),
        sample_top_p=float(t.sample.top_p),
        sample_prompt=str(t.sample.prompt),
    )


def _check_model(spec: ModelSpec) -> list[str]:
    from ablate.model import REGISTRIES

    problems = []
    for name in ("d_model", "n_layers", "n_heads", "block_size", "vocab_size"):
        if getattr(spec, name) < 1:
            problems.append(f"model.{name}={getattr(spec, name)} must be a positive integer")
    if problems:
        return problems
    if spec.d_model % spec.n_heads:
        problems.append(
            f"model.d_model={spec.d_model} must be divisible by model.n_heads={spec.n_heads}; "
            f"pick n_heads from {[h for h in range(1, spec.d_model + 1) if spec.d_model % h == 0 and h <= 64]}"
        )
        return problems
    if not 0.0 <= spec.dropout < 1.0:
        problems.append(f"dropout.p={spec.dropout} must be in [0, 1)")

    classes = {}
    for family in ("pos_enc", "attention", "ffn", "norm", "placement"):
        choice: Choice = getattr(spec, family)
        registry = REGISTRIES[family]
        try:
            cls = classes[family] = registry.get(choice.name)
        except KeyError as e:
            problems.append(str(e.args[0]))
            continue
        allowed = registry.knob_names(choice.name)
        unknown = [knob for knob in choice.knobs if knob not in allowed]
        for knob in unknown:
            problems.append(
                f"{family}.{knob} is not a knob of {family}={choice.name}; "
                f"its knobs are: {', '.join(allowed) or 'none'}"
            )
        if hasattr(cls, "check") and not unknown:
            problems += cls.check(spec, **choice.knobs)

    if "pos_enc" in classes and "attention" in classes:
        acts_on = classes["pos_enc"].acts_on
        supported = classes["attention"].supports
        if acts_on not in supported:
            problems.append(
                f"pos_enc={spec.pos_enc.name} cannot be used with attention={spec.attention.name}: "
                f"{classes['attention'].unsupported_reason.get(acts_on, 'not supported')}; "
                "choose another pos_enc or attention"
            )
    return problems


def _check_train(t: TrainSpec) -> list[str]:
    problems = []
    positive = {
        "batch_size": t.batch_size,
        "eval_every": t.eval_every,
        "eval_batches": t.eval_batches,
        "log_every": t.log_every,
        "lr": t.lr,
    }
    for name, value in positive.items():
        if value <= 0:
            problems.append(f"train.{name}={value} must be > 0")
    for name in ("max_steps", "max_tokens", "checkpoint_every"):
        value = getattr(t, name)
        if value is not None and value <= 0:
            problems.append(f"train.{name}={value} must be > 0 (or null)")
    if "cpu" not in t.steps_by_device:
        problems.append("train.steps_by_device needs a `cpu` entry (the fallback budget)")
    if not 0.0 <= t.min_lr_ratio <= 1.0:
        problems.append(f"train.min_lr_ratio={t.min_lr_ratio} must be in [0, 1]")
    if not 0.0 <= t.warmup_fraction < 1.0:
        problems.append(f"train.warmup_fraction={t.warmup_fraction} must be in [0, 1)")
    if t.grad_clip < 0:
        problems.append(f"train.grad_clip={t.grad_clip} must be >= 0 (0 turns clipping off)")
    if t.sample_tokens < 0 or t.sample_temperature < 0 or not 0 < t.sample_top_p <= 1:
        problems.append("train.sample needs tokens >= 0, temperature >= 0 and 0 < top_p <= 1")
    return problems


def validate(cfg: DictConfig) -> tuple[ModelSpec, TrainSpec]:
    """Turn a composed config into specs, or raise SpecError listing every problem (one line each)."""
    problems: list[str] = []
    try:
        mspec = model_spec(cfg)
    except (KeyError, ValueError) as e:
        raise SpecError([str(e.args[0]) if e.args else repr(e)]) from None
    problems += _check_model(mspec)
    tspec = train_spec(cfg)
    problems += _check_train(tspec)
    if str(cfg.device) not in ("auto", "cpu", "cuda", "mps") and not str(cfg.device).startswith("cuda:"):
        problems.append(f"device={cfg.device} is not one of auto, cpu, cuda, cuda:N, mps")
    from ablate.data import check_data_config

    problems += check_data_config(cfg.data, cfg.tokenizer, mspec.block_size)
    if problems:
        raise SpecError(problems)
    return mspec, tspec
