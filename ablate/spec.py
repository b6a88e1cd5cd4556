"""The typed specs a run is built from, and the names every part agrees on — each defined once, here.

This module imports nothing else of ablate: the config layer (`ablate.config`) fills these dataclasses from the
composed config, model code reads `ModelSpec`, the trainer reads `TrainSpec`, and records and reports use the
names below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# The config groups a study varies, in report order. All but dropout and optim are built from a class (`_target_`).
FAMILIES = ("pos_enc", "attention", "ffn", "norm", "placement", "dropout", "optim")
COMPONENT_FAMILIES = ("pos_enc", "attention", "ffn", "norm", "placement")

# Config keys that say where or how a run is recorded, not what it computes. Derived from this one list: the
# config hash (so a rerun with other logging continues the same run), run and job-dir names, and the keys the
# comparison report ignores. `debug` is the fault injection of runs recorded before it moved into the tests.
RECORDING_ONLY = ("out_dir", "logger", "device", "resume", "study", "sweep", "debug", "hydra", "data.cache_dir",
                  "train.keep_checkpoints", "train.inference",
                  # how seeds are scheduled, not what one seed computes: each member of an ensemble job records the
                  # config hash of the separate run of its seed (ablate.training.ensemble)
                  "train.ensemble_seeds")
# Keys that make a run a repeat of the same variant, not another variant (data.order: how the seed and data.seed
# pick the order of training batches, ablate.data.batches.order_seed).
REPEAT_KEYS = ("seed", "data.seed", "data.order")
# A component option's class, named in its YAML: the computation is its name and knobs, so it is left out of the
# config hash (runs recorded before `_target_` existed keep their hash).
TARGET_KEY = "_target_"
# Config keys added after runs were recorded, at the value that computes what those runs computed. At that value
# they are left out of the config hash and of compare's run identity, so a run recorded before the key existed keeps
# its hash (a rerun still skips it) and groups with new runs of the same computation.
ADDED_DEFAULTS: dict[str, Any] = {
    "model.z_loss": 0.0, "model.logit_softcap": None, "model.attention_pattern": None, "model.pos_enc_pattern": None,
    "model.value_residual": False, "attention.qk_norm": False, "attention.gate": False,
    "data.order": "fixed",  # runs before data.order drew batches from data.seed alone
    "dropout.attention": None, "dropout.residual": None,  # null: dropout.p, as before the split
    "train.grad_accum": 1,
    "optim.name": "adamw",  # the optimizer group: runs before it trained with AdamW (train.lr, betas, weight_decay)
}

# Defaults changed without changing what is trained (train.sample.prompt: only the text written after training):
# the config hash and compare's run identity read the new default as the value runs had before, so those runs keep
# their hash (a rerun still skips them) and their group. key -> (new default, the default before).
CHANGED_DEFAULTS: dict[str, tuple[Any, Any]] = {"train.sample.prompt": (None, "def "),
                                                # auto is false on a CPU, where every run before it was recorded
                                                "train.compile": ("auto", False)}

# train.keep_checkpoints: what a completed run keeps. all: checkpoints/last.pt (weights, optimizer, RNG, batch
# position) and model.safetensors; final: model.safetensors only; none: neither.
KEEP_CHECKPOINTS = ("all", "final", "none")


def at_added_default(key: str, value: Any) -> bool:
    """Whether `key` is an added key at its recorded-before value (`value` as configured or as its text: 0, "0.0",
    None, "None", [] all count as off)."""
    if key not in ADDED_DEFAULTS:
        return False
    default = ADDED_DEFAULTS[key]
    if value is None or value == [] or str(value) in ("None", "null", "[]"):
        return default is None
    try:
        return default is not None and float(value) == float(default)
    except (TypeError, ValueError):
        return str(value).lower() == str(default).lower()


def key_in(key: str, prefixes: tuple[str, ...]) -> bool:
    """`logger.mode` is in ("logger",); `data.seed` is in ("data.seed",) but `data.seeds` is not."""
    key = key.lstrip("+~")
    return any(key == p or key.startswith(p + ".") for p in prefixes)


class SpecError(ValueError):
    """Raised with one line per problem found in a config."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Choice:
    """One option of a component family: its name, its class (`_target_`) and its knobs (the other keys)."""

    name: str
    knobs: dict[str, Any] = field(default_factory=dict)
    target: str | None = None

    @property
    def cls(self) -> type:
        from hydra.utils import get_object

        if self.target is None:
            raise ValueError(f"option {self.name} names no class (`_target_`)")
        return get_object(self.target)

    def build(self, *args: Any) -> Any:
        return self.cls(*args, **self.knobs)


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
    dropout: float = 0.0  # on the embeddings and each sublayer's output (dropout.residual, else dropout.p)
    attention_dropout: float = 0.0  # on attention weights (dropout.attention, else dropout.p)
    bias: bool = False
    tie_embeddings: bool = True
    init_std: float = 0.02
    seed: int = 0  # used only by variants with seeded structure (e.g. random attention blocks)
    z_loss: float = 0.0  # coefficient of log²Z of the output softmax (PaLM); 0: off
    logit_softcap: float | None = None  # output logits -> cap·tanh(logits/cap) (Gemma 2); None: off
    # Per-layer choices repeated over the depth (layer l takes entry l mod len); empty: `attention`/`pos_enc` everywhere
    attention_pattern: tuple[Choice, ...] = ()
    pos_enc_pattern: tuple[Choice, ...] = ()
    value_residual: bool = False  # later layers attend with ½·own + ½·first layer's values (ResFormer); False: off

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def attention_at(self, layer: int) -> Choice:
        return self.attention_pattern[layer % len(self.attention_pattern)] if self.attention_pattern else self.attention

    def pos_enc_at(self, layer: int) -> Choice:
        return self.pos_enc_pattern[layer % len(self.pos_enc_pattern)] if self.pos_enc_pattern else self.pos_enc

    def at_layer(self, layer: int) -> ModelSpec:
        """This spec as layer `layer` sees it: its own attention and positional encoding in place of the model's."""
        if not (self.attention_pattern or self.pos_enc_pattern):
            return self
        return dataclasses.replace(self, attention=self.attention_at(layer), pos_enc=self.pos_enc_at(layer))


@dataclass
class ModelConfig:
    """The schema of conf/model/*.yaml (a size)."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    block_size: int
    bias: bool
    tie_embeddings: bool
    init_std: float
    z_loss: float = 0.0
    logit_softcap: float | None = None
    attention_pattern: list[str] | None = None
    pos_enc_pattern: list[str] | None = None
    value_residual: bool = False


@dataclass
class SampleSpec:
    tokens: int
    temperature: float
    top_p: float
    prompt: str | None  # None: the first words of the val split (ablate.training.sample.data_prompt)


@dataclass
class InferenceSpec:
    """What is measured after training (`ablate.training.inference`); it changes nothing that is trained."""

    decode_tokens: int = 32  # greedy steps timed with the cache (0: no timing; the KV-cache size is always given)
    batch: int = 8  # the second decode measurement's batch (the first is batch 1)


MUON_LR_RULES = ("match_rms_adamw", "original")  # torch.optim.Muon's adjust_lr_fn
# The optimizers ablate.training.optim.make_optimizer builds, by `optim.name`: an optim YAML must name one of them
OPTIMIZERS = ("adamw", "muon")
MUON_MAX_NS_STEPS = 99  # torch.optim.Muon refuses 100 or more Newton-Schulz iterations (at its first step)


@dataclass
class OptimSpec:
    """The schema of conf/optim/*.yaml. adamw: AdamW on every parameter (train.lr, train.betas, train.weight_decay).
    muon: Muon on the 2-D matrices inside the blocks, AdamW on the rest (`ablate.training.optim`)."""

    name: str = "adamw"
    lr: float | None = None  # Muon's peak lr; null: train.lr (with match_rms_adamw, AdamW's lr carries over)
    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5  # Newton-Schulz iterations that orthogonalize the update
    adjust_lr: str = "match_rms_adamw"  # MUON_LR_RULES


@dataclass
class TrainSpec:
    """The schema of conf/train/*.yaml; its defaults live in conf/train/default.yaml."""

    batch_size: int
    max_steps: int | None
    max_tokens: int | None
    steps_by_device: dict[str, int]
    lr: float
    min_lr_ratio: float
    warmup_fraction: float
    weight_decay: float
    betas: list[float]
    grad_clip: float
    eval_every: int
    eval_batches: int
    log_every: int
    compile: str  # auto (compile on CUDA only) | true | false: ablate.training.parallelize.compiles
    checkpoint_every: int | None
    sample: SampleSpec
    keep_checkpoints: str = "all"  # KEEP_CHECKPOINTS; the default for configs recorded before the key existed
    grad_accum: int = 1  # micro-batches per step: batch_size stays the batch of one optimizer step
    inference: InferenceSpec = field(default_factory=InferenceSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)  # from the `optim` group, not conf/train
    ensemble_seeds: list[int] | None = None  # these seeds trained in one process as one stacked model; None: `seed`

    def total_steps(self, device: str, block_size: int) -> int:
        """The step budget: an explicit token budget wins, then explicit steps, then the per-device default."""
        if self.max_tokens is not None:
            return max(1, -(-self.max_tokens // (self.batch_size * block_size)))
        if self.max_steps is not None:
            return self.max_steps
        return self.steps_by_device.get(device.split(":")[0], self.steps_by_device["cpu"])
