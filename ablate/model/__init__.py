"""The built-in options of each component family (named by conf/<family>/*.yaml) and the model assembly.
Model code knows nothing of Hydra, files or logging — only `ModelSpec`."""

from ablate.model.transformer import TransformerLM, count_parameters, flops_per_token

__all__ = ["TransformerLM", "count_parameters", "flops_per_token"]
