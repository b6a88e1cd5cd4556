"""Per-layer patterns: `model.attention_pattern` and `model.pos_enc_pattern`, lists of option names repeated over
the depth (layer l takes entry l mod len; a depth that is not a multiple of the length ends mid-pattern, as Gemma 3's
26 layers end a 5:1 local:global pattern).

An entry is an option name, optionally with knobs: `local:window:32` (`name:knob:value[:knob:value...]`, since
Hydra's list syntax has no `=` inside an element). An entry takes its knobs from its YAML in conf/<family>/ (or on
`hydra.searchpath`); an entry naming the run's own choice of that family (`attention=local attention.window=32
model.attention_pattern=[local,local,local,mha]`) takes that configured node instead, so the command line's knobs
apply to it.
"""

from __future__ import annotations

from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from ablate.spec import TARGET_KEY, Choice, ModelSpec, SpecError

PATTERN_FAMILIES = {"attention_pattern": "attention", "pos_enc_pattern": "pos_enc"}


def searchpath(cfg: DictConfig) -> tuple[str, ...]:
    """Where Hydra looks for options in this run (`hydra.searchpath`), as an override option discovery takes."""
    entries = OmegaConf.select(cfg, "hydra.searchpath", default=None)
    if entries is None:
        from hydra.core.hydra_config import HydraConfig

        entries = HydraConfig.get().searchpath if HydraConfig.initialized() else []
    entries = list(entries or [])
    return (f"hydra.searchpath=[{','.join(entries)}]",) if entries else ()


def parse_entry(entry: str) -> tuple[str, dict[str, Any]]:
    """`local:window:32` -> ("local", {"window": 32}); values read as YAML scalars (32, 0.5, true, null)."""
    name, *rest = str(entry).split(":")
    if not name or len(rest) % 2:
        raise ValueError(f"`{entry}` is not `name` or `name:knob:value[:knob:value...]`")
    return name, {rest[i]: yaml.safe_load(rest[i + 1]) for i in range(0, len(rest), 2)}


def pattern_choices(cfg: DictConfig, key: str, entries: list[str] | None) -> tuple[Choice, ...]:
    """`model.<key>`'s entries as Choices (knobs not yet type-checked), or SpecError with one line per bad entry."""
    from ablate.components.options import option

    if not entries:
        return ()
    family = PATTERN_FAMILIES[key]
    configured = OmegaConf.to_container(cfg[family], resolve=True)
    found, problems = [], []
    for entry in entries:
        try:
            name, knobs = parse_entry(entry)
        except ValueError as e:
            problems.append(f"model.{key}: {e}; e.g. {_example(family)}")
            continue
        if name == configured.get("name"):
            base, target = {k: v for k, v in configured.items() if k not in ("name", TARGET_KEY)}, \
                configured.get(TARGET_KEY)
        else:
            try:
                known = option(family, name, searchpath(cfg))
            except KeyError as e:
                problems.append(f"model.{key}: {e.args[0]}")
                continue
            base, target = dict(known.knobs), known.target
        found.append(Choice(name, {**base, **knobs}, target))
    if problems:
        raise SpecError(problems)
    return tuple(found)


def _example(family: str) -> str:
    return "[local:window:32,local:window:32,local:window:32,mha]" if family == "attention" else "[rope,rope,rope,none]"


def check_patterns(spec: ModelSpec, classes: dict[str, type]) -> list[str]:
    """Problems of the patterns, one line each: lengths, input encodings (they act once, before layer 0, so they
    cannot vary per layer), and every layer's own pos_enc × attention pair with each class's `check`.
    `classes`: the resolved classes of the family choices; pattern entries' knobs are already type-checked."""
    problems = []
    for key in PATTERN_FAMILIES:
        pattern = getattr(spec, key)
        if len(pattern) > spec.n_layers:
            unused = [str(i + 1) for i in range(spec.n_layers, len(pattern))]
            problems.append(f"model.{key} has {len(pattern)} entries but model.n_layers={spec.n_layers}: "
                            f"{'entry' if len(unused) == 1 else 'entries'} {', '.join(unused)} would never be used; "
                            f"shorten the pattern or add layers")
    if spec.pos_enc_pattern:
        inputs = [c.name for c in spec.pos_enc_pattern if c.cls.acts_on == "input"]
        if inputs:
            problems.append(f"model.pos_enc_pattern: {', '.join(dict.fromkeys(inputs))} acts on the input "
                            f"embedding, once for all layers, so it cannot vary per layer; use encodings that act in "
                            f"attention (rope, alibi, relative, none)")
        if classes["pos_enc"].acts_on == "input":
            problems.append(f"model.pos_enc_pattern sets every layer's encoding, but pos_enc={spec.pos_enc.name} "
                            f"acts on the input embedding too; set pos_enc to a pattern entry (e.g. pos_enc="
                            f"{spec.pos_enc_pattern[0].name}) or none")
    if problems or not (spec.attention_pattern or spec.pos_enc_pattern):
        return problems
    seen: list[tuple[Choice, Choice]] = []
    for layer in range(spec.n_layers):
        layer_spec = spec.at_layer(layer)
        pair = (layer_spec.pos_enc, layer_spec.attention)
        if pair in seen:
            continue
        seen.append(pair)
        pos_cls, attention_cls = layer_spec.pos_enc.cls, layer_spec.attention.cls
        where = f"layer {layer} (pos_enc={pair[0].name}, attention={pair[1].name})"
        for line in pos_cls.check(layer_spec, pair[0].knobs) + attention_cls.check(layer_spec, pair[1].knobs):
            problems.append(f"model pattern, {where}: {line}")
        if pos_cls.acts_on not in attention_cls.supports:
            reason = attention_cls.unsupported_reason.get(pos_cls.acts_on, "not supported")
            problems.append(f"model pattern, {where}: {reason}; change the pattern entry")
    return list(dict.fromkeys(problems))
