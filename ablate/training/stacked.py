"""K models of one architecture run as one: the member dimension folded into the batch.

Activations are (K·B, ...) with member k's rows at [k·B, (k+1)·B), so every parameter-free operation (attention's
SDPA, activations, dropout, residual adds) runs once over all members as it would over a larger batch, and the
components' own code runs unchanged. Only what holds weights is swapped for a stacked form: a linear layer is one
`bmm` over (K, d_in, d_out) weights, a norm normalizes the whole tensor over its last dim and applies each member's
gain, the token embedding looks up in a (K·V, d) table. A component these forms do not cover (its own parameters
broadcast over the batch, a per-seed buffer, an auxiliary loss over the batch) is named by `unstackable`, and the
ensemble then runs its members one after another instead (`ablate.training.ensemble`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components import Component, PositionalEncoding
from ablate.model import TransformerLM
from ablate.model.norm import DynamicTanh
from ablate.model.pos_enc import LearnedPositionalEmbedding


def _per_member(x: torch.Tensor, k: int, weight: torch.Tensor) -> torch.Tensor:
    """`weight` (K, d) shaped to broadcast over x (K, B, ..., d)."""
    return weight.view(k, *([1] * (x.dim() - 2)), weight.shape[-1])


class StackedLinear(nn.Module):
    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None):
        super().__init__()
        self.weight, self.bias = weight, bias  # (K, d_out, d_in), (K, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        rows = x.reshape(k, -1, x.shape[-1])  # (K, B·…, d_in): one matrix product per member
        w = self.weight.transpose(1, 2)
        y = torch.bmm(rows, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), rows, w)
        return y.view(*x.shape[:-1], -1)


class StackedNorm(nn.Module):
    """LayerNorm or RMSNorm over the last dim of the whole tensor, then each member's gain (and bias)."""

    def __init__(self, kind: str, eps: float | None, weight: nn.Parameter | None, bias: nn.Parameter | None):
        super().__init__()
        self.kind, self.eps, self.weight, self.bias = kind, eps, weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (x.shape[-1],)
        y = F.layer_norm(x, d, eps=self.eps) if self.kind == "layer" else F.rms_norm(x, d, eps=self.eps)
        if self.weight is None:
            return y
        k = self.weight.shape[0]
        shaped = y.unflatten(0, (k, -1))
        out = shaped * _per_member(shaped, k, self.weight) if self.bias is None else \
            torch.addcmul(_per_member(shaped, k, self.bias), shaped, _per_member(shaped, k, self.weight))
        return out.flatten(0, 1)


class StackedDynamicTanh(nn.Module):
    def __init__(self, alpha: nn.Parameter, weight: nn.Parameter, bias: nn.Parameter | None):
        super().__init__()
        self.alpha, self.weight, self.bias = alpha, weight, bias  # (K,), (K, d), (K, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        shaped = x.unflatten(0, (k, -1))
        alpha = self.alpha.view(k, *([1] * (shaped.dim() - 1)))
        y = torch.tanh(alpha * shaped) * _per_member(shaped, k, self.weight)
        return (y if self.bias is None else y + _per_member(shaped, k, self.bias)).flatten(0, 1)


class StackedTokenEmbedding(nn.Module):
    def __init__(self, weight: nn.Parameter):
        super().__init__()
        self.weight = weight  # (K, V, d)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        k, vocab, d = self.weight.shape
        offsets = torch.arange(k, device=idx.device).repeat_interleave(idx.shape[0] // k) * vocab
        return F.embedding(idx + offsets.view(-1, *([1] * (idx.dim() - 1))), self.weight.view(k * vocab, d))


class StackedLearnedPositions(PositionalEncoding):
    acts_on = "input"

    def __init__(self, spec, table: nn.Parameter):
        super().__init__(spec)
        self.table = table  # (K, block_size, d)

    def embed(self, h: torch.Tensor, start: int = 0) -> torch.Tensor:
        k = self.table.shape[0]
        positions = self.table[:, start : start + h.shape[1]].unsqueeze(1)  # (K, 1, T, d)
        return (h.unflatten(0, (k, -1)) + positions).flatten(0, 1)


class Stacker:
    """Builds the stacked model from K members, one stacked Parameter per member Parameter (a tied head shares its
    embedding's), and remembers which is which."""

    def __init__(self, members: list[TransformerLM]):
        self.members = members
        self.stacked: dict[int, nn.Parameter] = {}  # id(member 0's parameter) -> its stacked Parameter

    def stack(self, name: str) -> nn.Parameter | None:
        params = [m.get_parameter(name) if _has(m, name) else None for m in self.members]
        if params[0] is None:
            return None
        if id(params[0]) not in self.stacked:
            self.stacked[id(params[0])] = nn.Parameter(torch.stack([p.detach() for p in params]).contiguous())
        return self.stacked[id(params[0])]

    def replacement(self, name: str, module: nn.Module) -> nn.Module | None:
        """The stacked form of the module at `name` in each member, or None if it has none."""
        p = f"{name}." if name else ""
        if isinstance(module, LearnedPositionalEmbedding):
            return StackedLearnedPositions(self.members[0].spec, self.stack(f"{p}table.weight"))
        if isinstance(module, DynamicTanh):
            return StackedDynamicTanh(self.stack(f"{p}alpha"), self.stack(f"{p}weight"), self.stack(f"{p}bias"))
        if type(module) is nn.Linear:
            return StackedLinear(self.stack(f"{p}weight"), self.stack(f"{p}bias"))
        if isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and type(module).forward in (nn.LayerNorm.forward,
                                                                                     nn.RMSNorm.forward):
            kind = "layer" if isinstance(module, nn.LayerNorm) else "rms"
            bias = self.stack(f"{p}bias") if kind == "layer" else None
            return StackedNorm(kind, module.eps, self.stack(f"{p}weight"), bias)
        if name == "token_embedding":
            return StackedTokenEmbedding(self.stack(f"{p}weight"))
        return None

    def build(self) -> TransformerLM:
        model = copy.deepcopy(self.members[0])
        self._swap(model, "")
        return model

    def _swap(self, parent: nn.Module, prefix: str) -> None:
        for child_name, child in list(parent.named_children()):
            name = f"{prefix}{child_name}"
            new = self.replacement(name, child)
            if new is not None:
                setattr(parent, child_name, new)
            else:
                self._swap(child, f"{name}.")


def _has(module: nn.Module, name: str) -> bool:
    try:
        module.get_parameter(name)
        return True
    except AttributeError:
        return False


def stack_members(members: list[TransformerLM]) -> tuple[TransformerLM | None, dict[int, nn.Parameter], str]:
    """(the stacked model, {id(member 0's parameter): stacked parameter}, '') when every part of the members has a
    stacked form, else (None, {}, why not)."""
    reason = unstackable(members)
    if reason:
        return None, {}, reason
    stacker = Stacker(members)
    model = stacker.build()
    ours = {id(p) for p in stacker.stacked.values()}
    left = [name for name, p in model.named_parameters() if id(p) not in ours]
    if left:
        return None, {}, f"{left[0]} has no stacked form"
    reason = probe_difference(model, members)
    return (None, {}, reason) if reason else (model, stacker.stacked, "")


def unstackable(members: list[TransformerLM]) -> str:
    """Why the members cannot run folded into one batch ('' when they can): a buffer that differs between seeds
    (e.g. BigBird's seeded random blocks), or an auxiliary loss computed over the batch."""
    for (name, buffer), *others in zip(*(m.named_buffers() for m in members)):
        if any(not torch.equal(buffer, other) for _, other in others):
            return f"buffer {name} differs between the seeds"
    for _, module in members[0].components():
        if type(module).aux_loss is not Component.aux_loss:
            return f"{type(module).__name__} has an auxiliary loss over the batch"
    return ""


@torch.no_grad()
def probe_difference(model: TransformerLM, members: list[TransformerLM]) -> str:
    """'' if the stacked model's logits on a probe batch equal each member's own; else what differs. This catches a
    component that uses a stacked weight in a way the folded batch does not cover (e.g. its weight read directly)."""
    spec = members[0].spec
    device = next(members[0].parameters()).device
    idx = torch.randint(0, spec.vocab_size, (2, min(spec.block_size, 16)), generator=torch.Generator().manual_seed(0))
    idx = idx.to(device)
    modes = [m.training for m in (model, *members)]
    for m in (model, *members):
        m.eval()
    try:
        stacked = model(idx.repeat(len(members), 1)).unflatten(0, (len(members), -1))
        for k, member in enumerate(members):
            expected = member(idx)
            if not torch.allclose(stacked[k], expected, rtol=1e-3, atol=1e-4):
                return f"its stacked forward differs from seed member {k}'s own by {(stacked[k] - expected).abs().max():.2e}"
    except Exception as e:  # noqa: BLE001 - a component the stacked forms break: run the members one by one
        return f"its stacked forward fails ({type(e).__name__}: {e})".splitlines()[0]
    finally:
        for m, mode in zip((model, *members), modes):
            m.train(mode)
    return ""
