"""Model code: knows nothing of Hydra, files or logging — only `ModelSpec`."""

from ablate.model import attention_linear, attention_sparse, mla  # noqa: F401  (register their variants)
from ablate.model.attention import ATTENTION
from ablate.model.ffn import FFN
from ablate.model.norm import NORM
from ablate.model.pos_enc import POS_ENC
from ablate.model.transformer import PLACEMENT, TransformerLM, count_parameters, flops_per_token

REGISTRIES = {"pos_enc": POS_ENC, "attention": ATTENTION, "ffn": FFN, "norm": NORM, "placement": PLACEMENT}

__all__ = ["REGISTRIES", "TransformerLM", "count_parameters", "flops_per_token"]
