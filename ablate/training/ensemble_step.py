"""One training step for K members of an ensemble: stacked (one forward and backward for all, `StackedStep`) or one
member after another (`MemberLoop`, for components without a stacked form). Either way each member has its own
loss, its own gradient clipping and its own AdamW state, and `export()` leaves in each member's own model and
optimizer exactly what its separate run would hold, so checkpoints, evaluation, final weights and samples use the
members themselves."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ablate.spec import TrainSpec
from ablate.training.device import autocast
from ablate.training.optim import adamw, parameter_groups, set_lr
from ablate.training.parallelize import parallelize
from ablate.training.stacked import stack_members
from ablate.training.state import TrainState, rng_state, set_rng_state
from ablate.training.step import forward_backward


def make_step(states: list[TrainState], tspec: TrainSpec, device: str, rngs: list[dict]
              ) -> tuple[StackedStep | MemberLoop, str]:
    """The stacked step when the members' components all have a stacked form, else the member loop; and why not.
    `rngs`: each member's random stream (the loop keeps them apart; the stacked step draws from the global one)."""
    if tspec.optim.name != "adamw":  # Muon orthogonalizes each member's matrices: not elementwise over the stack
        return MemberLoop(states, tspec, device, rngs), f"optim={tspec.optim.name} has no stacked form"
    model, stacked, reason = stack_members([s.model for s in states])
    if model is None:
        return MemberLoop(states, tspec, device, rngs), reason
    return StackedStep(states, model, stacked, tspec, device), ""


class MemberLoop:
    """Each member's step as its separate run takes it, dropout from its own random stream (swapped in and out)."""

    def __init__(self, states: list[TrainState], tspec: TrainSpec, device: str, rngs: list[dict]):
        self.states, self.tspec, self.device = states, tspec, device
        self.step_fns = [parallelize(s.model, tspec, device) for s in states]
        self.rngs = list(rngs)  # the stream each member left off with (see `activate`)

    def activate(self, k: int) -> None:
        """Make member k's random stream the global one (before saving its checkpoint, after loading it)."""
        set_rng_state(self.rngs[k])

    def keep_rng(self, k: int) -> None:
        self.rngs[k] = rng_state()

    def set_lr(self, lr: float) -> None:
        for state in self.states:
            set_lr(state.optimizer, lr)

    def forward_backward(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        values = []
        for k, (state, step_fn, (x, y)) in enumerate(zip(self.states, self.step_fns, batches)):
            self.activate(k)
            values.append(forward_backward(step_fn, state, x.to(self.device), y.to(self.device), self.device,
                                           self.tspec.grad_accum, self.tspec.grad_clip))
            self.keep_rng(k)
        return values

    def step(self) -> None:
        for state in self.states:
            state.optimizer.step()

    def export(self) -> None:
        """The members' models and optimizers are the training state itself: nothing to copy."""

    def without(self, dropped: set[int]) -> MemberLoop:
        kept = [k for k in range(len(self.states)) if k not in dropped]
        return MemberLoop([self.states[k] for k in kept], self.tspec, self.device, [self.rngs[k] for k in kept])


class StackedStep:
    """All members in one forward and backward over their stacked batches; one AdamW over the stacked parameters
    (AdamW is elementwise, so that is K AdamWs), each member's gradient clipped to its own norm."""

    def __init__(self, states: list[TrainState], model, stacked: dict[int, torch.nn.Parameter], tspec: TrainSpec,
                 device: str):
        self.states, self.model, self.tspec, self.device = states, model, tspec, device
        self.k = len(states)
        member = states[0].model
        self.member_params = [list(s.model.parameters()) for s in states]  # (a tied head once, as in parameters())
        self.params = [stacked[id(p)] for p in member.parameters()]
        groups = [{**g, "params": [stacked[id(p)] for p in g["params"]]}
                  for g in parameter_groups(member, tspec.weight_decay)]
        self.optimizer = adamw(groups, tspec, device)
        self.load_optimizers()
        self.step_fn = parallelize(model, tspec, device)

    def activate(self, k: int) -> None:
        """One random stream for all members (dropout draws its masks over the stacked batch)."""

    def keep_rng(self, k: int) -> None:
        pass

    def set_lr(self, lr: float) -> None:
        set_lr(self.optimizer, lr)

    def forward_backward(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """Each member's logged losses (train/loss, train/aux/z_loss), means over its micro-batches."""
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.tspec.grad_accum
        x = torch.stack([b[0] for b in batches]).to(self.device)  # (K, B, T)
        y = torch.stack([b[1] for b in batches]).to(self.device)
        logged: list[dict[str, torch.Tensor]] = [{} for _ in range(self.k)]
        for x_micro, y_micro in zip(x.chunk(accum, dim=1), y.chunk(accum, dim=1)):
            losses = self.member_losses(x_micro.flatten(0, 1), y_micro)
            torch.stack([sum(terms.values()) for terms in losses]).sum().div(accum).backward()
            for mine, terms in zip(logged, losses):
                for key, value in terms.items():
                    mine[key] = mine.get(key, 0) + value.detach() / accum
        if self.tspec.grad_clip > 0:
            self.clip(self.tspec.grad_clip)
        return logged

    def member_losses(self, idx: torch.Tensor, targets: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """idx (K·B, T), targets (K, B, T) -> per member {train/loss: its mean cross-entropy, train/aux/...}."""
        with autocast(self.device):
            logits = self.step_fn(idx)
        logits = logits.unflatten(0, (self.k, -1))
        ce = F.cross_entropy(logits.float().flatten(0, 2), targets.flatten(), reduction="none").view(self.k, -1)
        counted = (targets != -100).view(self.k, -1).sum(1)  # what cross_entropy's mean divides by
        ce = ce.sum(1) / counted
        member = self.states[0].model
        return [{"train/loss": ce[k], **{f"train/aux/{name}": loss for name, loss in
                                         member.logit_losses(logits[k]).items()}} for k in range(self.k)]

    @torch.no_grad()
    def clip(self, max_norm: float) -> None:
        """clip_grad_norm_ per member: each member's gradients scaled by min(1, max_norm / (its norm + 1e-6))."""
        grads = [p.grad for p in self.params if p.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1).norm(dim=1)  # (K,)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))

    def step(self) -> None:
        self.optimizer.step()

    @torch.no_grad()
    def export(self) -> None:
        """Each member's slice of the stacked weights and AdamW state into the member's own model and optimizer."""
        for k, params in enumerate(self.member_params):
            for p, stacked in zip(params, self.params):
                p.copy_(stacked[k])
        state = self.optimizer.state_dict()
        for k, member in enumerate(self.states):
            member.optimizer.load_state_dict({
                "state": {i: {key: value[k].clone() if value.dim() > 0 else value.clone() for key, value in entry.items()}
                          for i, entry in state["state"].items()},
                "param_groups": state["param_groups"]})

    def load_optimizers(self) -> None:
        """The members' AdamW states (resumed from their checkpoints, all at the same step), stacked."""
        states = [s.optimizer.state_dict() for s in self.states]
        if not states[0]["state"]:
            return
        self.optimizer.load_state_dict({
            "state": {i: {key: torch.stack([s["state"][i][key] for s in states]) if value.dim() > 0 else value
                          for key, value in entry.items()} for i, entry in states[0]["state"].items()},
            "param_groups": states[0]["param_groups"]})

    def without(self, dropped: set[int]) -> StackedStep | MemberLoop:
        """The step of the members not in `dropped` (diverged ones), rebuilt from their exported state."""
        self.export()
        kept = [self.states[k] for k in range(self.k) if k not in dropped]
        return make_step(kept, self.tspec, self.device, [rng_state() for _ in kept])[0]

