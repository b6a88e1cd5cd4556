"""The component contract. A variant is one class deriving from its family's base, plus one YAML in
`conf/<family>/` (or a user's own config dir on `hydra.searchpath`) that names it with `_target_`:

    PositionalEncoding · Attention · FeedForward · Norm · Block (placement)

Nothing lists the options: studies and the generic tests enumerate the YAMLs (`discover`).
"""

from ablate.components.base import (
    FAMILY_BASES,
    Attention,
    Block,
    Component,
    DecodeCache,
    FeedForward,
    ForwardContext,
    Norm,
    PositionalEncoding,
)
from ablate.components.options import Option, discover, option, option_names
from ablate.spec import ModelSpec

__all__ = ["Attention", "Block", "Component", "DecodeCache", "FeedForward", "ForwardContext", "Norm",
           "PositionalEncoding", "FAMILY_BASES", "ModelSpec", "Option", "discover", "option", "option_names"]
