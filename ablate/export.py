"""`python -m ablate.export <run_dir> --out <dir>`: a run's trained model as a Hugging Face `LlamaForCausalLM`
checkpoint (config.json + model.safetensors, and the tokenizer where the run trained a BPE), for downstream evals.

A run is exportable when Llama can express every choice: rope, rmsnorm, swiglu, mha/gqa/mqa, pre placement, no
biases (tied or untied head), and none of the knobs Llama lacks. Anything else is refused in one line naming the
choices and what it would take. The weights map one to one (ablate's rotary convention is Llama's rotate-half, and
its fused key/value projection splits into k_proj and v_proj); the export then runs both models on the same ids and
refuses to write unless the logits agree, so a choice this list does not know about cannot slip through.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from ablate.spec import ModelSpec

# What Llama expresses, by the class of each choice (exact classes: local attention derives from GQA, for one).
LLAMA_CLASSES = {
    "pos_enc": ("ablate.model.pos_enc.RotaryPositionalEncoding", "rope"),
    "attention": (("ablate.model.attention.MultiHeadAttention", "ablate.model.attention.GroupedQueryAttention",
                   "ablate.model.attention.MultiQueryAttention"), "mha, gqa or mqa"),
    "ffn": ("ablate.model.ffn.SwiGLU", "swiglu"),
    "norm": ("ablate.model.norm.RMSNorm", "rmsnorm"),
    "placement": ("ablate.model.transformer.PreNormBlock", "pre"),
}
# Knobs and model keys Llama has no counterpart for: exportable only when off (false, null, 0 or empty).
OFF_KNOBS = ("attention.qk_norm", "attention.gate")
OFF_MODEL = ("bias", "value_residual", "logit_softcap", "attention_pattern", "pos_enc_pattern")
LOGIT_TOLERANCE = 1e-4  # float32, max |Δ logit| between ablate's forward and the exported model's


class ExportError(ValueError):
    """Why a run cannot be exported, in one line."""


def llama_problems(spec: ModelSpec) -> list[str]:
    """The choices of `spec` that LlamaForCausalLM cannot express, each with what Llama has instead."""
    problems = []
    for family, (targets, llama_has) in LLAMA_CLASSES.items():
        choice = getattr(spec, family)
        if choice.target not in ((targets,) if isinstance(targets, str) else targets):
            problems.append(f"{family}={choice.name} (Llama has {llama_has})")
    for key in OFF_KNOBS:
        family, knob = key.split(".")
        if getattr(spec, family).knobs.get(knob):
            problems.append(f"{key}={getattr(spec, family).knobs[knob]} (Llama has none)")
    for key in OFF_MODEL:
        if getattr(spec, key, None):
            problems.append(f"model.{key}={getattr(spec, key)} (Llama has none)")
    return problems


def llama_config(model):
    """The LlamaConfig of a Llama-compatible model (its widths read off the built layers)."""
    import inspect

    from transformers import LlamaConfig

    spec = model.spec
    ffn_hidden = model.blocks[0].ffn.gate.out_features
    attention = model.blocks[0].attn
    rope_base = float(spec.pos_enc.knobs.get("base", 10000.0))
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:  # transformers >= 5
        rope = {"rope_parameters": {"rope_type": "default", "rope_theta": rope_base}}
    else:
        rope = {"rope_theta": rope_base}
    return LlamaConfig(
        vocab_size=spec.vocab_size, hidden_size=spec.d_model, intermediate_size=ffn_hidden,
        num_hidden_layers=spec.n_layers, num_attention_heads=spec.n_heads,
        num_key_value_heads=attention.n_kv_heads, head_dim=spec.head_dim,
        max_position_embeddings=spec.block_size, rms_norm_eps=float(spec.norm.knobs.get("eps", 1e-6)),
        **rope,
        tie_word_embeddings=spec.tie_embeddings, attention_bias=False, mlp_bias=False, hidden_act="silu",
        bos_token_id=None, eos_token_id=None, pad_token_id=None, architectures=["LlamaForCausalLM"],
    )


def llama_state_dict(model, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """ablate's parameter names and layout -> Llama's."""
    kv_rows = model.blocks[0].attn.n_kv_heads * spec.head_dim
    out = {"model.embed_tokens.weight": model.token_embedding.weight, "model.norm.weight": model.final_norm.weight,
           "lm_head.weight": model.head.weight}
    for i, block in enumerate(model.blocks):
        at = f"model.layers.{i}"
        k, v = block.attn.kv_proj.weight.split(kv_rows, dim=0)  # the fused projection is [K; V]
        out |= {f"{at}.input_layernorm.weight": block.norm1.weight,
                f"{at}.post_attention_layernorm.weight": block.norm2.weight,
                f"{at}.self_attn.q_proj.weight": block.attn.q_proj.weight,
                f"{at}.self_attn.k_proj.weight": k, f"{at}.self_attn.v_proj.weight": v,
                f"{at}.self_attn.o_proj.weight": block.attn.out_proj.weight,
                f"{at}.mlp.gate_proj.weight": block.ffn.gate.weight, f"{at}.mlp.up_proj.weight": block.ffn.up.weight,
                f"{at}.mlp.down_proj.weight": block.ffn.down.weight}
    return {name: tensor.detach().clone().contiguous() for name, tensor in out.items()}


def max_logit_difference(model, hf_model, vocab_size: int, length: int) -> float:
    ids = torch.randint(0, vocab_size, (2, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return (model(ids) - hf_model(ids).logits).abs().max().item()


def export(run_dir: Path, out: Path) -> dict:
    """Write the run's model to `out` as LlamaForCausalLM; returns what was written and the logit check."""
    from ablate.weights import load_model

    try:
        from transformers import LlamaForCausalLM
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ExportError("export needs the `export` extra: pip install 'ablate[export]'") from None
    hf_logging.disable_progress_bar()
    model, cfg = load_model(run_dir, with_config=True)
    spec = model.spec
    problems = llama_problems(spec)
    if problems:
        raise ExportError(f"{run_dir}: LlamaForCausalLM cannot express {'; '.join(problems)}. Export needs a run "
                          "with pos_enc=rope norm=rmsnorm ffn=swiglu attention=mha|gqa|mqa placement=pre "
                          "model.bias=false and those knobs off")
    hf_model = LlamaForCausalLM(llama_config(model)).eval()
    missing, unexpected = hf_model.load_state_dict(llama_state_dict(model, spec), strict=False)
    missing = [m for m in missing if not (spec.tie_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise ExportError(f"{run_dir}: weight names do not map (missing {missing}, unexpected {unexpected})")
    delta = max_logit_difference(model, hf_model, spec.vocab_size, spec.block_size)
    if not delta <= LOGIT_TOLERANCE:
        raise ExportError(f"{run_dir}: the exported model's logits differ from the run's by {delta:.3g} "
                          f"(> {LOGIT_TOLERANCE:g}); not written")
    staging = out.with_name(f".{out.name}.partial")  # nothing half-written under `out`
    shutil.rmtree(staging, ignore_errors=True)
    hf_model.save_pretrained(staging)
    tokenizer = save_tokenizer(cfg, staging)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return {"out": str(out), "max_abs_logit_diff": delta, "tokenizer": tokenizer,
            "params": sum(p.numel() for p in hf_model.parameters())}


def save_tokenizer(cfg, out: Path) -> str:
    """The run's BPE tokenizer as a fast HF tokenizer; a byte-level run needs none (its ids are the UTF-8 bytes)."""
    if cfg.tokenizer.name != "bpe":
        return f"none: tokenizer={cfg.tokenizer.name}, ids are UTF-8 bytes (id = byte value)"
    from transformers import PreTrainedTokenizerFast

    from ablate.data import load_tokens

    bpe = load_tokens(cfg.data, cfg.tokenizer, int(cfg.model.block_size)).tokenizer
    specials = list(cfg.tokenizer.special_tokens or [])
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe.tokenizer, eos_token=specials[0] if specials else None)
    fast.save_pretrained(out)
    return "bpe (tokenizer.json)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.export", description=(
        "Export a run's trained model as a Hugging Face LlamaForCausalLM checkpoint (config.json + model.safetensors"
        ", and the tokenizer for BPE runs); transformers.AutoModelForCausalLM.from_pretrained(OUT) loads it."))
    parser.add_argument("run_dir", type=Path, help="a run directory (with summary.json and its final weights)")
    parser.add_argument("--out", type=Path, required=True, help="the directory to write")
    args = parser.parse_args(argv)
    try:
        result = export(args.run_dir, args.out)
    except (ExportError, FileNotFoundError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 2
    print(f"exported {result['params']:,} parameters as LlamaForCausalLM to {result['out']} "
          f"(max |Δ logit| vs the run {result['max_abs_logit_diff']:.2e}; tokenizer: {result['tokenizer']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
