"""A run's trained weights outside the trainer: `model.safetensors` in the run dir (the final weights, written when a
run completes; safetensors holds tensors only, so reading it never runs code), and `load_model(run_dir)`, the model
a notebook or the exporter gets back — the final weights, else the last checkpoint's, in eval mode."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from ablate.track.files import FILE_MODE

FINAL_WEIGHTS = "model.safetensors"
COMPILED_PREFIX = "_orig_mod."  # torch.compile's wrapper, in case a state dict was taken from it


def save_final_weights(model, run_dir: Path) -> Path:
    """Write `model`'s weights to run_dir/model.safetensors atomically (a tied head is stored once)."""
    from safetensors.torch import save_model

    path = Path(run_dir) / FINAL_WEIGHTS
    tmp = path.with_name(f".{path.name}.tmp")
    save_model(getattr(model, "_orig_mod", model), str(tmp))
    os.chmod(tmp, FILE_MODE)  # safetensors creates the file 0600; run-dir files follow the umask
    tmp.replace(path)
    return path


def load_model(run_dir: str | Path, with_config: bool = False):
    """The run's model (`TransformerLM`, eval mode, on CPU) with its trained weights: `model.safetensors` when the
    run completed, else the last checkpoint's. With `with_config`, also the run's resolved config."""
    from ablate.config import validate
    from ablate.model import TransformerLM

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir}: no config.yaml, so not a run directory")
    cfg = OmegaConf.load(config_path)
    model_spec, _ = validate(cfg)
    model = TransformerLM(model_spec)
    final, checkpoint = run_dir / FINAL_WEIGHTS, run_dir / "checkpoints" / "last.pt"
    if final.exists():
        from safetensors.torch import load_model as load_safetensors

        load_safetensors(model, str(final))
    elif checkpoint.exists():
        from ablate.training.checkpoint import read_checkpoint

        state = read_checkpoint(checkpoint)["model"]
        model.load_state_dict({k.removeprefix(COMPILED_PREFIX): v for k, v in state.items()})
    else:
        raise FileNotFoundError(f"{run_dir}: no weights ({FINAL_WEIGHTS} or checkpoints/last.pt); the run kept none "
                                "(train.keep_checkpoints) or has not saved yet")
    model.eval()
    return (model, cfg) if with_config else model
